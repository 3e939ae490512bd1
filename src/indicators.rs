//! Typed indicators, extracted from event fields and free text.
//!
//! Strong indicators tie cases across time: an actor, a file hash, a public domain, a public
//! IP, a CVE. Infrastructure inside a site is typed apart and scoped by site: a private,
//! CGNAT or ULA address (`internal_ip`) and an internal host name (`host`, including names
//! under `.local`, `.lan`, `.internal`, ...): 10.0.0.5 at one company is not 10.0.0.5 at
//! another. Loopback, link-local, unspecified, multicast and documentation addresses say
//! nothing about a case and are dropped. A token that looks like a domain but ends in a file
//! extension (`invoice.pdf`, `setup.exe`) is a file name, not a domain. Rules are indicators
//! too (`rule`), weak ones: rarity weighting decides what they are worth.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::proto::{CaseContext, Event, IocKind};

/// Kinds of indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A threat actor.
    Actor,
    /// A file hash (MD5, SHA-1, SHA-256).
    Hash,
    /// A public domain.
    Domain,
    /// A public IP address.
    Ip,
    /// A CVE id.
    Cve,
    /// A private, CGNAT or ULA address, scoped by site (`site/addr`).
    InternalIp,
    /// An internal host name, scoped by site (`site/name`).
    Host,
    /// A detection rule.
    Rule,
}

impl Kind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Actor => "actor",
            Kind::Hash => "hash",
            Kind::Domain => "domain",
            Kind::Ip => "ip",
            Kind::Cve => "cve",
            Kind::InternalIp => "internal_ip",
            Kind::Host => "host",
            Kind::Rule => "rule",
        }
    }

    /// How much one shared value of this kind says, before rarity.
    pub fn weight(kind: &str) -> f64 {
        match kind {
            "actor" | "hash" | "cve" => 1.5,
            "domain" | "ip" => 1.0,
            "internal_ip" | "host" => 0.5,
            _ => 0.25,
        }
    }

    /// Whether it is infrastructure an attacker brings (for campaign clustering).
    pub(crate) fn is_strong(kind: &str) -> bool {
        matches!(kind, "actor" | "hash" | "domain" | "ip" | "cve")
    }
}

/// One indicator.
pub(crate) type Indicator = (Kind, String);

const FILE_EXTENSIONS: &[&str] = &[
    "exe", "dll", "sys", "bat", "cmd", "ps1", "vbs", "js", "jar", "py", "sh", "pl", "php", "asp",
    "aspx", "jsp", "html", "htm", "css", "txt", "log", "csv", "json", "xml", "yml", "yaml", "ini",
    "cfg", "conf", "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "rtf", "zip", "rar", "7z",
    "gz", "tgz", "tar", "bz2", "iso", "img", "tmp", "dat", "bin", "so", "o", "jpg", "jpeg", "png",
    "gif", "bmp", "svg", "mp3", "mp4", "db", "sqlite", "bak", "old", "lnk", "msi", "pcap", "evtx",
];

const INTERNAL_SUFFIXES: &[&str] = &[
    "local",
    "lan",
    "internal",
    "intranet",
    "corp",
    "home",
    "localdomain",
    "localhost",
    "test",
    "invalid",
];

/// The indicators of an event: its case's fields plus what its text mentions.
pub(crate) fn of_event(event: &Event) -> BTreeSet<Indicator> {
    let mut out = BTreeSet::new();
    match event {
        Event::AlertReceived(e) => {
            let site = e.alert.site.clone().unwrap_or_default();
            let case = CaseContext::from_alert(&e.alert, "");
            of_case(&case, &mut out);
            of_text(&e.alert.rule_name, &site, &mut out);
        }
        other => {
            let Some(case) = other.case() else {
                return out;
            };
            of_case(case, &mut out);
            let site = case.site.clone().unwrap_or_default();
            let mut text = String::new();
            match other {
                Event::AlertTriaged(e) => text.push_str(&e.rationale),
                Event::Tier2Analysis(e) => {
                    text.push_str(&e.summary);
                    for s in &e.next_steps {
                        text.push(' ');
                        text.push_str(s);
                    }
                }
                Event::CaseEscalated(e) => text.push_str(&e.reason),
                Event::IrPlan(e) => text.push_str(&e.summary),
                Event::ThreatIntelReport(e) => {
                    if let Some(actor) = e.likely_actor.as_deref().map(str::trim)
                        && !actor.is_empty()
                    {
                        out.insert((Kind::Actor, actor.to_lowercase()));
                    }
                    for ioc in &e.iocs {
                        of_ioc(ioc.kind, &ioc.value, &site, &mut out);
                    }
                    text.push_str(&e.evidence.join(" "));
                }
                _ => {}
            }
            of_text(&text, &site, &mut out);
        }
    }
    out
}

/// The indicators of a case's own fields (rule, host, IPs), without its text.
pub(crate) fn of_case_fields(case: &CaseContext) -> BTreeSet<Indicator> {
    let mut out = BTreeSet::new();
    of_case(case, &mut out);
    of_text(
        &case.rule_name,
        case.site.as_deref().unwrap_or_default(),
        &mut out,
    );
    out
}

fn of_case(case: &CaseContext, out: &mut BTreeSet<Indicator>) {
    let site = case.site.as_deref().unwrap_or_default();
    if !case.rule_id.is_empty() {
        out.insert((Kind::Rule, case.rule_id.clone()));
    }
    if !case.host.is_empty() {
        out.insert((Kind::Host, format!("{site}/{}", case.host.to_lowercase())));
    }
    for ip in &case.src_ips {
        if let Ok(addr) = ip.trim().parse::<IpAddr>()
            && let Some(i) = of_ip(addr, site)
        {
            out.insert(i);
        }
    }
}

fn of_ioc(kind: IocKind, value: &str, site: &str, out: &mut BTreeSet<Indicator>) {
    let value = value.trim();
    let found = match kind {
        IocKind::Ip => value.parse().ok().and_then(|a| of_ip(a, site)),
        IocKind::Domain => of_domain(value, site, true),
        IocKind::Hash => of_hash(value),
        IocKind::Cve => of_cve(value),
        IocKind::Actor => (!value.is_empty()).then(|| (Kind::Actor, value.to_lowercase())),
        IocKind::Rule => (!value.is_empty()).then(|| (Kind::Rule, value.to_owned())),
        IocKind::Host => {
            (!value.is_empty()).then(|| (Kind::Host, format!("{site}/{}", value.to_lowercase())))
        }
        IocKind::Url => None,
    };
    if let Some(i) = found {
        out.insert(i);
    } else {
        of_text(value, site, out);
    }
}

/// Indicators mentioned in free text.
pub(crate) fn of_text(text: &str, site: &str, out: &mut BTreeSet<Indicator>) {
    let is_sep = |c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '_'));
    for raw in text.split(is_sep) {
        let token = raw.trim_matches(|c: char| matches!(c, '.' | ':' | '-' | '_'));
        if token.len() < 4 {
            continue;
        }
        if let Some(i) = of_token(token, site) {
            out.insert(i);
        }
    }
}

fn of_token(token: &str, site: &str) -> Option<Indicator> {
    // An address starts with a digit (IPv4) or holds a colon (IPv6): parse nothing else.
    let may_be_address =
        token.as_bytes().first().is_some_and(u8::is_ascii_digit) || token.contains(':');
    if may_be_address && let Ok(addr) = token.parse::<IpAddr>() {
        return of_ip(addr, site);
    }
    // ip:port
    if let Some((host, port)) = token.rsplit_once(':')
        && port.bytes().all(|b| b.is_ascii_digit())
        && let Ok(addr) = host.parse::<IpAddr>()
    {
        return of_ip(addr, site);
    }
    if let Some(cve) = of_cve(token) {
        return Some(cve);
    }
    if let Some(hash) = of_hash(token) {
        return Some(hash);
    }
    if token.contains(':') {
        return None;
    }
    of_domain(token, site, false)
}

// The checks below look at the token as it is and copy it only for an indicator: they run on
// every word of every rationale the projector folds.

fn of_cve(token: &str) -> Option<Indicator> {
    if !token.as_bytes().get(..4)?.eq_ignore_ascii_case(b"CVE-") {
        return None;
    }
    // Four ASCII bytes end on a char boundary.
    let (year, number) = token[4..].split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (year.len() == 4 && digits(year) && number.len() >= 4 && digits(number))
        .then(|| (Kind::Cve, token.to_ascii_uppercase()))
}

fn of_hash(token: &str) -> Option<Indicator> {
    if !matches!(token.len(), 32 | 40 | 64) {
        return None;
    }
    let hex = token.bytes().all(|b| b.is_ascii_hexdigit());
    let has_digit = token.bytes().any(|b| b.is_ascii_digit());
    let has_letter = token.bytes().any(|b| b.is_ascii_alphabetic());
    (hex && has_digit && has_letter).then(|| (Kind::Hash, token.to_ascii_lowercase()))
}

/// `typed`: the source says it is a domain (an IOC), so a TLD that is also a file extension
/// (`.zip`, `.sh`) does not make it a file name.
fn of_domain(token: &str, site: &str, typed: bool) -> Option<Indicator> {
    let name = token.trim_end_matches('.');
    let (_, tld) = name.rsplit_once('.')?;
    if name.len() > 253 {
        return None;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return None;
    }
    if !(2..=24).contains(&tld.len()) || !tld.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let is = |list: &[&str]| list.iter().any(|e| e.eq_ignore_ascii_case(tld));
    if !typed && is(FILE_EXTENSIONS) {
        return None;
    }
    let name = name.to_ascii_lowercase();
    if is(INTERNAL_SUFFIXES) {
        return Some((Kind::Host, format!("{site}/{name}")));
    }
    Some((Kind::Domain, name))
}

/// Classifies an address: public, internal to `site`, or meaningless.
/// The indicator an action's target is recorded as in `site`: an address, or a host name.
pub(crate) fn of_target(target: &str, site: &str) -> Option<Indicator> {
    let target = target.trim();
    match target.parse::<IpAddr>() {
        Ok(addr) => of_ip(addr, site),
        Err(_) => {
            (!target.is_empty()).then(|| (Kind::Host, format!("{site}/{}", target.to_lowercase())))
        }
    }
}

pub(crate) fn of_ip(addr: IpAddr, site: &str) -> Option<Indicator> {
    match addr {
        IpAddr::V4(v4) => of_ipv4(v4, site),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => of_ipv4(v4, site),
            None => of_ipv6(v6, site),
        },
    }
}

fn of_ipv4(ip: Ipv4Addr, site: &str) -> Option<Indicator> {
    let [a, b, c, _] = ip.octets();
    let documentation =
        (a, b, c) == (192, 0, 2) || (a, b, c) == (198, 51, 100) || (a, b, c) == (203, 0, 113);
    if ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || documentation
        || a == 0
        || a >= 240
    {
        return None;
    }
    if is_internal(&IpAddr::V4(ip)) {
        return Some((Kind::InternalIp, format!("{site}/{ip}")));
    }
    Some((Kind::Ip, ip.to_string()))
}

/// Whether `ip` is an address inside a site: private (RFC 1918), CGNAT (100.64/10), the
/// benchmarking range (198.18/15) or an IPv6 unique local address (fc00::/7).
pub(crate) fn is_internal(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
        }
        IpAddr::V6(v6) => v6.segments()[0] & 0xfe00 == 0xfc00,
    }
}

fn of_ipv6(ip: Ipv6Addr, site: &str) -> Option<Indicator> {
    let first = ip.segments()[0];
    let link_local = first & 0xffc0 == 0xfe80;
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8;
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || link_local || documentation {
        return None;
    }
    if is_internal(&IpAddr::V6(ip)) {
        return Some((Kind::InternalIp, format!("{site}/{ip}")));
    }
    Some((Kind::Ip, ip.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Vec<(String, String)> {
        let mut out = BTreeSet::new();
        of_text(t, "acme", &mut out);
        out.into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), v))
            .collect()
    }

    fn has(found: &[(String, String)], kind: &str, value: &str) -> bool {
        found.iter().any(|(k, v)| k == kind && v == value)
    }

    #[test]
    fn addresses_are_typed_by_range() {
        let t = text(
            "from 8.8.8.8:53 and 10.1.2.3, 172.16.0.9, 192.168.1.1, 100.64.0.1, fd00::1, \
             127.0.0.1, 169.254.1.1, 0.0.0.0, 224.0.0.1, ::1, fe80::1, 192.0.2.5, 2001:db8::1, \
             2a00:1450:4001:81b::200e",
        );
        assert!(has(&t, "ip", "8.8.8.8"));
        assert!(has(&t, "ip", "2a00:1450:4001:81b::200e"));
        for internal in [
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
        ] {
            assert!(
                has(&t, "internal_ip", &format!("acme/{internal}")),
                "{internal}: {t:?}"
            );
        }
        assert_eq!(
            t.len(),
            7,
            "loopback, link-local, unspecified, multicast and documentation dropped: {t:?}"
        );
    }

    #[test]
    fn domains_files_hosts_hashes_and_cves() {
        let t = text(
            "Beacon to Evil-C2.biz. dropped invoice.pdf and setup.exe via dc01.corp.local; \
             sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 md5 \
             d41d8cd98f00b204e9800998ecf8427e exploits cve-2021-44228 (not CVE-21-1)",
        );
        assert!(has(&t, "domain", "evil-c2.biz"), "{t:?}");
        assert!(has(&t, "host", "acme/dc01.corp.local"));
        assert!(
            !t.iter()
                .any(|(_, v)| v.contains("invoice") || v.contains("setup"))
        );
        assert!(has(
            &t,
            "hash",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        ));
        assert!(has(&t, "hash", "d41d8cd98f00b204e9800998ecf8427e"));
        assert!(has(&t, "cve", "CVE-2021-44228"));
        assert_eq!(t.len(), 5, "{t:?}");
        assert!(text("version 1.2.3 and AMiner: New event type.").is_empty());
    }

    /// The checks read a token as written, in any case, and store each indicator in one case.
    #[test]
    fn indicators_are_found_in_any_case_and_stored_in_one() {
        let t = text(
            "Mail to Evil-C2.BIZ from DC02.Corp.LOCAL dropped SETUP.EXE and Report.PDF; see \
             Cve-2022-0001, hash D41D8CD98F00B204E9800998ECF8427E, peer 9.9.9.9:443 and \
             FD00::2; not cve-22-1, ABCD::XYZ or 10.0.0.300",
        );
        assert_eq!(
            t,
            [
                ("hash", "d41d8cd98f00b204e9800998ecf8427e"),
                ("domain", "evil-c2.biz"),
                ("ip", "9.9.9.9"),
                ("cve", "CVE-2022-0001"),
                ("internal_ip", "acme/fd00::2"),
                ("host", "acme/dc02.corp.local"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    /// A typed IOC may hold anything: trailing dots, any case, characters of several bytes
    /// where a check slices the value. Each is read as its kind, or as text, or not at all.
    #[test]
    fn typed_iocs_are_read_in_any_case_and_past_characters_of_several_bytes() {
        let ioc = |kind: IocKind, value: &str| {
            let mut out = BTreeSet::new();
            of_ioc(kind, value, "acme", &mut out);
            out.into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect::<Vec<_>>()
        };
        let one = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert_eq!(ioc(IocKind::Domain, "Evil.ZIP."), one("domain", "evil.zip"));
        assert_eq!(
            ioc(IocKind::Domain, " Files.Corp. "),
            one("host", "acme/files.corp")
        );
        assert_eq!(
            ioc(IocKind::Cve, "cVe-2024-12345"),
            one("cve", "CVE-2024-12345")
        );
        // Not indicators as typed, and nothing in them as text: é puts a char boundary
        // inside the bytes the CVE check looks at.
        for value in ["CVé-2024-1234", "é", "", "evil..com", "x.e\u{301}"] {
            assert_eq!(ioc(IocKind::Cve, value), vec![], "{value:?}");
        }
        // Not a domain as typed; as text, the run of ASCII in it is.
        assert_eq!(ioc(IocKind::Domain, "ÉVIL.COM"), one("domain", "vil.com"));
        assert_eq!(
            ioc(IocKind::Hash, "D41D8CD98F00B204E9800998ECF8427É"),
            vec![]
        );
    }
}
