//! What the detector vendors published about their rules: the only built-in knowledge of what
//! is dangerous (no phrase or weight here was chosen by looking at any data set's labels).
//!
//! Sources, each read at run time from the user's own installation or carried by the alert:
//! - **Wazuh** rule levels, groups and ATT&CK ids, from the ruleset's XML files
//!   (`/var/ossec/ruleset/rules`), matched by the rule's `<description>` (the title a Wazuh alert
//!   shows) or given by the alert (`rule.level`, `rule.groups`, `rule.mitre.id`). Levels are
//!   tiered as Wazuh's "Rules classification" describes them
//!   (<https://documentation.wazuh.com/current/user-manual/ruleset/rules/rules-classification.html>,
//!   from OSSEC's): 0-4 no security relevance or successful events, 5-7 user errors and low
//!   relevance attacks, 8-11 first-time-seen events, errors from invalid sources and integrity
//!   warnings, 12-14 high importance events, 15-16 severe attacks.
//! - **Suricata** classtypes and their priorities (1 high .. 4 very low), from the rules' `msg`
//!   and `classtype` and `classification.config`, or the EVE alert's `alert.severity` and
//!   `alert.category`; ET rules' own `signature_severity` metadata when the rules carry it.
//! - **Emerging Threats categories**, the second word of an ET title (`ET SCAN ...`), tiered by
//!   the category definitions ET publishes ("Suricata 5/6/7 rule categories",
//!   <https://community.emergingthreats.net/t/suricata-5-6-7-rule-categories/94>) against ET's
//!   severity scale ("Rules severities", <https://community.emergingthreats.net/t/rules-severities/337>:
//!   informational, minor = reconnaissance and scanning, major = an active attempt at
//!   compromise, critical = an end system is likely compromised). Used only when the rule itself
//!   is not in the user's rules.
//! - **Sigma, ECS and OCSF** named severities (`informational` .. `critical`) carried by the
//!   alert.
//!
//! Detectors without vendor knowledge (AMiner) get a category of their own and an unknown tier:
//! what they mean is learned only from dispositions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::scan::{attribute, element, element_all, option, split_groups, strip_comments};
use crate::proto::{Alert, VendorEvidence, VendorMeta};

/// `[rulesets]`: the detector vendors' rule files, as a user's installation has them. All
/// optional: without them, titles are tiered by what the alert carries and the ET category.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesetsConfig {
    /// Wazuh rule files or folders of them (`/var/ossec/ruleset/rules`).
    pub wazuh: Vec<PathBuf>,
    /// Suricata rule files or folders of them (`/var/lib/suricata/rules`).
    pub suricata: Vec<PathBuf>,
    /// Suricata's `classification.config` (classtype priorities).
    pub suricata_classification: Option<PathBuf>,
}

/// A vendor severity, on one scale for every vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// The vendor says nothing.
    Unknown,
    /// Informational: no security relevance by itself.
    Info,
    /// Low: user errors, reconnaissance, low-relevance attacks.
    Low,
    /// Medium: worth a look (first-time events, repeated failures).
    Medium,
    /// High: an active attempt at compromise, a high-importance event.
    High,
    /// Critical: a system is likely compromised.
    Critical,
}

impl Tier {
    /// The label used in evidence.
    pub fn label(self) -> &'static str {
        match self {
            Tier::Unknown => "unknown",
            Tier::Info => "info",
            Tier::Low => "low",
            Tier::Medium => "medium",
            Tier::High => "high",
            Tier::Critical => "critical",
        }
    }

    /// A Wazuh rule level, as Wazuh's rules classification describes the levels.
    pub(crate) fn of_wazuh_level(level: u8) -> Tier {
        match level {
            0..=4 => Tier::Info,
            5..=7 => Tier::Low,
            8..=11 => Tier::Medium,
            12..=14 => Tier::High,
            _ => Tier::Critical,
        }
    }

    /// A Suricata classtype priority (1 high, 2 medium, 3 low, 4 very low).
    pub(crate) fn of_suricata_priority(priority: u8) -> Tier {
        match priority {
            0 | 1 => Tier::High,
            2 => Tier::Medium,
            3 => Tier::Low,
            _ => Tier::Info,
        }
    }

    /// A named severity: Sigma/ECS/OCSF (`informational` .. `critical`, OCSF `fatal`) or ET's
    /// `signature_severity` (`informational`, `minor`, `major`, `critical`).
    pub(crate) fn of_name(name: &str) -> Option<Tier> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "informational" | "info" | "information" => Tier::Info,
            "low" | "minor" => Tier::Low,
            "medium" | "moderate" => Tier::Medium,
            "high" | "major" => Tier::High,
            "critical" | "fatal" => Tier::Critical,
            _ => return None,
        })
    }
}

/// ET categories and the severity their published definitions describe (see the module docs;
/// informational = not malicious in itself, minor = reconnaissance, scanning or reputation,
/// major = an attempt at compromise, critical = a compromised system). Keys are the category as
/// it appears in titles, upper case.
const ET_CATEGORIES: &[(&str, Tier)] = &[
    // Informational: "may not be malicious in and of itself", policy, hunting, protocol notes.
    ("INFO", Tier::Info),
    ("POLICY", Tier::Info),
    ("HUNTING", Tier::Info),
    ("CHAT", Tier::Info),
    ("GAMES", Tier::Info),
    ("INAPPROPRIATE", Tier::Info),
    ("P2P", Tier::Info),
    ("FILE_SHARING", Tier::Info),
    ("VOIP", Tier::Info),
    ("DELETED", Tier::Info),
    ("ICMP_INFO", Tier::Info),
    ("TOR", Tier::Info),
    // Minor: reconnaissance, scanning, IP reputation lists, unwanted software.
    ("SCAN", Tier::Low),
    ("DROP", Tier::Low),
    ("DSHIELD", Tier::Low),
    ("CIARMY", Tier::Low),
    ("3CORESEC", Tier::Low),
    ("COMPROMISED", Tier::Low),
    ("ADWARE_PUP", Tier::Low),
    ("USER_AGENTS", Tier::Low),
    ("JA3", Tier::Low),
    ("ICMP", Tier::Low),
    ("SNMP", Tier::Low),
    ("TFTP", Tier::Low),
    ("TELNET", Tier::Low),
    ("FTP", Tier::Low),
    ("IMAP", Tier::Low),
    ("POP3", Tier::Low),
    ("SMTP", Tier::Low),
    ("RPC", Tier::Low),
    ("NETBIOS", Tier::Low),
    // Major: attacks and exploitation attempts.
    ("EXPLOIT", Tier::High),
    ("EXPLOIT_KIT", Tier::High),
    ("WEB_SERVER", Tier::High),
    ("WEB_SPECIFIC_APPS", Tier::High),
    ("WEB_CLIENT", Tier::High),
    ("SHELLCODE", Tier::High),
    ("SQL", Tier::High),
    ("ACTIVEX", Tier::High),
    ("DOS", Tier::High),
    ("DNS", Tier::High),
    ("PHISHING", Tier::High),
    ("CURRENT_EVENTS", Tier::High),
    ("SCADA", Tier::High),
    ("MOBILE_MALWARE", Tier::Critical),
    // Critical: a compromised end system (post-infection traffic, C2, attack responses).
    ("MALWARE", Tier::Critical),
    ("TROJAN", Tier::Critical),
    ("WORM", Tier::Critical),
    ("ATTACK_RESPONSE", Tier::Critical),
    ("BOTCC", Tier::Critical),
    ("COINMINING", Tier::Critical),
];

/// The ET category of an ET title's category word, if ET publishes it.
pub(crate) fn et_category(word: &str) -> Option<Tier> {
    let word = word.to_ascii_uppercase().replace('-', "_");
    ET_CATEGORIES
        .iter()
        .find(|(name, _)| *name == word)
        .map(|(_, tier)| *tier)
}

/// A Wazuh rule as the ruleset declares it.
#[derive(Debug, Clone)]
struct WazuhRule {
    id: String,
    level: u8,
    category: Option<String>,
    attack: Vec<String>,
    file: String,
}

/// A Suricata rule as the rules declare it.
#[derive(Debug, Clone)]
struct SuricataRule {
    sid: String,
    classtype: Option<String>,
    severity: Option<String>,
    file: String,
}

/// What was loaded, for the startup log and `--help`-style reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VendorSummary {
    /// Wazuh rules with a description.
    pub wazuh_rules: usize,
    /// Suricata rules with a message.
    pub suricata_rules: usize,
    /// Classtypes with a priority.
    pub classtypes: usize,
}

/// The vendors' knowledge: rulesets indexed by the title an alert shows.
#[derive(Debug, Default)]
pub struct Vendor {
    wazuh: HashMap<String, WazuhRule>,
    suricata: HashMap<String, SuricataRule>,
    classes: HashMap<String, u8>,
    /// Classtype names by their description, lower case (EVE's `alert.category` carries the
    /// description).
    class_names: HashMap<String, String>,
    summary: VendorSummary,
}

/// Why a ruleset could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    /// A file or folder could not be read.
    #[error("cannot read ruleset {0}: {1} (check [rulesets] in the config)")]
    Read(String, #[source] std::io::Error),
    /// A configured ruleset held no rule at all.
    #[error("ruleset {0} holds no {1} rule: is it the right folder?")]
    Empty(String, &'static str),
}

impl Vendor {
    /// Loads the configured rulesets (none configured: an empty, working `Vendor`).
    pub fn load(config: &RulesetsConfig) -> Result<Vendor, VendorError> {
        let mut vendor = Vendor::default();
        for path in &config.wazuh {
            let before = vendor.wazuh.len();
            for file in files(path, "xml")? {
                let text = read(&file)?;
                vendor.add_wazuh(&text, &file.display().to_string());
            }
            if vendor.wazuh.len() == before {
                return Err(VendorError::Empty(path.display().to_string(), "Wazuh"));
            }
        }
        for path in &config.suricata {
            let before = vendor.suricata.len();
            for file in files(path, "rules")? {
                let text = read(&file)?;
                vendor.add_suricata(&text, &file.display().to_string());
            }
            if vendor.suricata.len() == before {
                return Err(VendorError::Empty(path.display().to_string(), "Suricata"));
            }
        }
        if let Some(path) = &config.suricata_classification {
            vendor.add_classification(&read(path)?);
        }
        vendor.summary = VendorSummary {
            wazuh_rules: vendor.wazuh.len(),
            suricata_rules: vendor.suricata.len(),
            classtypes: vendor.classes.len(),
        };
        Ok(vendor)
    }

    /// What was loaded.
    pub fn summary(&self) -> &VendorSummary {
        &self.summary
    }

    /// Indexes the rules of one Wazuh rule file. Wazuh's own parser is lenient (rule files hold
    /// regexes with bare `<`), so this reads the few elements it needs by scanning, not as XML.
    pub(crate) fn add_wazuh(&mut self, text: &str, file: &str) {
        let text = strip_comments(text);
        let mut enclosing: Vec<Vec<String>> = Vec::new();
        let mut at = 0;
        while let Some(rel) = text[at..].find('<') {
            let start = at + rel;
            let rest = &text[start..];
            if let Some(tag) = rest.strip_prefix("<group") {
                let end = rest.find('>').map_or(rest.len(), |e| e + 1);
                if tag.starts_with(' ') || tag.starts_with('\t') || tag.starts_with('\n') {
                    let names = attribute(&rest[..end], "name").unwrap_or_default();
                    enclosing.push(split_groups(&names));
                    at = start + end;
                    continue;
                }
                // A `<group>` inside a rule is read with the rule.
                at = start + end;
            } else if rest.starts_with("</group>") {
                enclosing.pop();
                at = start + "</group>".len();
            } else if rest.starts_with("<rule ") || rest.starts_with("<rule\t") {
                let end = rest
                    .find("</rule>")
                    .map_or(rest.len(), |e| e + "</rule>".len());
                let body = &rest[..end];
                if let Some(rule) = wazuh_rule(body, &enclosing, file)
                    && let Some(desc) = element(body, "description")
                {
                    let key = normalize(&desc);
                    // Several rules can share a description: keep the vendor's highest
                    // opinion of it. Dynamic descriptions (`$(field)`) match no title.
                    let known_higher = self.wazuh.get(&key).is_some_and(|k| k.level >= rule.level);
                    if !key.is_empty() && !key.contains("$(") && !known_higher {
                        self.wazuh.insert(key, rule);
                    }
                }
                at = start + end;
            } else {
                at = start + 1;
            }
        }
    }

    /// Indexes the rules of one Suricata rule file (commented-out rules too: they still say
    /// what the vendor thinks of the title).
    pub(crate) fn add_suricata(&mut self, text: &str, file: &str) {
        for line in text.lines() {
            let line = line.trim_start_matches(['#', ' ', '\t']);
            if !(line.starts_with("alert") || line.starts_with("drop")) {
                continue;
            }
            let Some(msg) = option(line, "msg").map(|m| m.trim_matches('"').to_owned()) else {
                continue;
            };
            let severity = option(line, "metadata").and_then(|m| {
                m.split(',').find_map(|kv| {
                    let kv = kv.trim();
                    kv.strip_prefix("signature_severity")
                        .map(|v| v.trim().to_owned())
                })
            });
            self.suricata.insert(
                normalize(&msg),
                SuricataRule {
                    sid: option(line, "sid").unwrap_or_default(),
                    classtype: option(line, "classtype"),
                    severity,
                    file: file.to_owned(),
                },
            );
        }
    }

    /// Reads `classification.config` (`config classification: name,description,priority`).
    pub(crate) fn add_classification(&mut self, text: &str) {
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("config classification:") else {
                continue;
            };
            let parts: Vec<&str> = rest.split(',').collect();
            if parts.len() >= 3
                && let Ok(priority) = parts[parts.len() - 1].trim().parse::<u8>()
            {
                self.classes.insert(parts[0].trim().to_owned(), priority);
                self.class_names.insert(
                    parts[1..parts.len() - 1].join(",").trim().to_lowercase(),
                    parts[0].trim().to_owned(),
                );
            }
        }
    }

    /// The classtype a category names: a classtype itself (`attempted-admin`) or its
    /// description in `classification.config` (`Attempted Administrator Privilege Gain`, as
    /// EVE's `alert.category` carries it).
    fn classtype(&self, category: &str) -> Option<String> {
        let category = category.trim();
        if self.classes.contains_key(category) {
            return Some(category.to_owned());
        }
        self.class_names.get(&category.to_lowercase()).cloned()
    }

    /// What the vendor says of `alert`'s rule: from the alert's own fields first, then the
    /// rulesets by title, then the ET category word, else nothing but the detector family.
    pub fn view(&self, alert: &Alert) -> VendorView {
        let family = alert.source.trim().to_ascii_lowercase();
        if let Some(meta) = &alert.vendor
            && let Some(view) = self.of_meta(&family, meta)
        {
            return view;
        }
        let title = alert.rule_name.trim();
        let (detector, body) = split_title(title);
        let detector = detector.map_or(family.clone(), str::to_owned);
        let key = normalize(body);
        if detector == "wazuh"
            && let Some(rule) = self.wazuh.get(&key)
        {
            return VendorView {
                category: format!(
                    "wazuh:{}",
                    rule.category.as_deref().unwrap_or("uncategorized")
                ),
                tier: Tier::of_wazuh_level(rule.level),
                attack: rule.attack.clone(),
                classtype: None,
                level: Some(rule.level),
                source: format!(
                    "Wazuh rule {} (level {}) in {}",
                    rule.id,
                    rule.level,
                    file_name(&rule.file)
                ),
            };
        }
        let et_word = body
            .strip_prefix("ET ")
            .and_then(|rest| rest.split_whitespace().next());
        if detector == "suricata"
            && let Some(rule) = self.suricata.get(&key)
        {
            let priority = rule
                .classtype
                .as_deref()
                .and_then(|c| self.classes.get(c).copied());
            let tier = rule
                .severity
                .as_deref()
                .and_then(Tier::of_name)
                .or(priority.map(Tier::of_suricata_priority))
                .or(et_word.and_then(et_category))
                .unwrap_or(Tier::Unknown);
            let category = match (et_word, &rule.classtype) {
                (Some(word), _) => format!("et:{}", word.to_ascii_uppercase()),
                (None, Some(c)) => format!("suricata:{c}"),
                (None, None) => "suricata".to_owned(),
            };
            return VendorView {
                category,
                tier,
                attack: Vec::new(),
                classtype: rule.classtype.clone(),
                level: None,
                source: format!(
                    "Suricata rule sid {} ({}{}) in {}",
                    rule.sid,
                    rule.classtype.as_deref().unwrap_or("no classtype"),
                    priority.map_or(String::new(), |p| format!(", priority {p}")),
                    file_name(&rule.file)
                ),
            };
        }
        if let Some(word) = et_word
            && let Some(tier) = et_category(word)
        {
            return VendorView {
                category: format!("et:{}", word.to_ascii_uppercase()),
                tier,
                attack: Vec::new(),
                classtype: None,
                level: None,
                source: format!("ET category {} (ET's published category definitions)", word),
            };
        }
        VendorView {
            category: detector,
            tier: Tier::Unknown,
            attack: Vec::new(),
            classtype: None,
            level: None,
            source: "no vendor knowledge of this rule".to_owned(),
        }
    }

    fn of_meta(&self, family: &str, meta: &VendorMeta) -> Option<VendorView> {
        let tier = meta
            .severity
            .as_deref()
            .and_then(Tier::of_name)
            .or(meta.level.map(Tier::of_wazuh_level))
            .or(meta.priority.map(Tier::of_suricata_priority))
            .or_else(|| {
                meta.category
                    .as_deref()
                    .and_then(|c| self.classes.get(c).copied())
                    .map(Tier::of_suricata_priority)
            })?;
        let category = meta
            .category
            .clone()
            .or_else(|| semantic_group(&meta.groups))
            .unwrap_or_else(|| "uncategorized".to_owned());
        Some(VendorView {
            category: format!("{family}:{}", category.to_ascii_lowercase()),
            tier,
            attack: meta.attack.clone(),
            classtype: meta.category.as_deref().and_then(|c| self.classtype(c)),
            level: meta.level,
            source: "the alert's own vendor fields".to_owned(),
        })
    }
}

/// What the vendor says of one alert's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorView {
    /// The category priors are kept by: the detector family and its vendor category.
    pub category: String,
    /// The severity tier.
    pub tier: Tier,
    /// ATT&CK technique ids.
    pub attack: Vec<String>,
    /// The Suricata classtype (`attempted-recon`), when the rule has one.
    pub classtype: Option<String>,
    /// The Wazuh rule level, when the rule is a Wazuh one.
    pub level: Option<u8>,
    /// Where this came from.
    pub source: String,
}

impl VendorView {
    /// As recorded evidence.
    pub fn evidence(&self) -> VendorEvidence {
        VendorEvidence {
            category: self.category.clone(),
            tier: self.tier.label().to_owned(),
            source: self.source.clone(),
            attack: self.attack.clone(),
        }
    }
}

/// Splits `Wazuh: Web server 400 error code.` or `Suricata: Alert - ET SCAN ...` into the
/// detector and the vendor's own title.
fn split_title(title: &str) -> (Option<&'static str>, &str) {
    for (prefix, detector) in [
        ("Suricata: Alert - ", "suricata"),
        ("Suricata: ", "suricata"),
        ("Wazuh: ", "wazuh"),
    ] {
        if let Some(rest) = title.strip_prefix(prefix) {
            return (Some(detector), rest.trim());
        }
    }
    (None, title)
}

/// Lower case, whitespace collapsed, trailing period dropped: how titles are matched.
pub(crate) fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_lowercase());
    }
    while out.ends_with('.') {
        out.pop();
    }
    out
}

fn wazuh_rule(body: &str, enclosing: &[Vec<String>], file: &str) -> Option<WazuhRule> {
    let open_end = body.find('>')?;
    let open = &body[..open_end];
    let id = attribute(open, "id")?;
    let level = attribute(open, "level")?.trim().parse::<u8>().ok()?;
    let own: Vec<String> = element_all(body, "group")
        .iter()
        .flat_map(|g| split_groups(g))
        .collect();
    let category = semantic_group(&own).or_else(|| {
        enclosing
            .iter()
            .rev()
            .find_map(|names| semantic_group(names))
    });
    let attack = element(body, "mitre")
        .map(|m| element_all(&m, "id"))
        .unwrap_or_default()
        .into_iter()
        .map(|id| id.trim().to_owned())
        .filter(|id| id.starts_with('T'))
        .collect();
    Some(WazuhRule {
        id,
        level,
        category,
        attack,
        file: file.to_owned(),
    })
}

/// The first group that names what happened, not a compliance control.
fn semantic_group(groups: &[String]) -> Option<String> {
    const COMPLIANCE: [&str; 7] = [
        "pci_dss", "gdpr", "hipaa", "nist_", "tsc_", "gpg13", "mitre",
    ];
    groups
        .iter()
        .map(|g| g.trim())
        .find(|g| !g.is_empty() && !COMPLIANCE.iter().any(|c| g.starts_with(c)))
        .map(str::to_owned)
}

fn files(path: &Path, ext: &str) -> Result<Vec<PathBuf>, VendorError> {
    let shown = || path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| VendorError::Read(shown(), e))?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| VendorError::Read(shown(), e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    Ok(out)
}

fn read(path: &Path) -> Result<String, VendorError> {
    let bytes =
        std::fs::read(path).map_err(|e| VendorError::Read(path.display().to_string(), e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(source: &str, title: &str) -> Alert {
        Alert {
            source: source.into(),
            rule_name: title.into(),
            ..Alert::default()
        }
    }

    const WAZUH: &str = r#"
<!-- a comment with <rule id="1" level="15"> inside -->
<group name="web,accesslog,">
  <rule id="31101" level="5">
    <if_sid>31100</if_sid>
    <regex type="pcre2">\<\w+ bare brackets</regex>
    <description>Web server 400 error code.</description>
    <group>attack,pci_dss_6.5,</group>
  </rule>
  <rule id="31104" level="6">
    <description>Common web attack.</description>
    <mitre>
      <id>T1055</id>
      <id>T1190</id>
    </mitre>
    <group>pci_dss_6.5,gdpr_IV_35.7.d,</group>
  </rule>
</group>
<group name="syslog,pam,">
  <rule id="5502" level="3">
    <description>PAM: Login session closed.</description>
    <group>pci_dss_10.2.5,</group>
  </rule>
</group>
"#;

    #[test]
    fn wazuh_titles_get_their_rule_level_group_and_techniques() {
        let mut v = Vendor::default();
        v.add_wazuh(WAZUH, "0245-web_rules.xml");
        let w = v.view(&alert("wazuh", "Wazuh: Web server 400 error code."));
        assert_eq!(w.tier, Tier::Low);
        assert_eq!(w.category, "wazuh:attack");
        assert!(w.source.contains("31101"), "{}", w.source);
        let w = v.view(&alert("wazuh", "Wazuh: Common web attack."));
        assert_eq!(w.category, "wazuh:web", "no semantic group of its own");
        assert_eq!(w.attack, ["T1055", "T1190"]);
        let w = v.view(&alert("wazuh", "Wazuh: PAM: Login session closed."));
        assert_eq!((w.tier, w.category.as_str()), (Tier::Info, "wazuh:syslog"));
        assert!(
            !v.wazuh.contains_key("1"),
            "commented-out rules are not read"
        );
    }

    #[test]
    fn suricata_rules_use_the_classtype_priority_and_et_titles_their_category() {
        let mut v = Vendor::default();
        v.add_suricata(
            r#"alert smtp any any -> any any (msg:"SURICATA SMTP invalid reply"; flow:established; classtype:protocol-command-decode; sid:2220000; rev:1;)
# alert http any any -> any any (msg:"ET EXPLOIT Something; odd"; classtype:attempted-admin; sid:1; metadata:created_at 2020, signature_severity Major;)"#,
            "smtp-events.rules",
        );
        v.add_classification(
            "config classification: protocol-command-decode,Generic Protocol Command Decode,3\n\
             config classification: attempted-admin,Attempted Administrator Privilege Gain,1\n",
        );
        let s = v.view(&alert(
            "suricata",
            "Suricata: Alert - SURICATA SMTP invalid reply",
        ));
        assert_eq!(s.tier, Tier::Low);
        assert_eq!(s.category, "suricata:protocol-command-decode");
        let e = v.view(&alert(
            "suricata",
            "Suricata: Alert - ET EXPLOIT Something; odd",
        ));
        assert_eq!((e.tier, e.category.as_str()), (Tier::High, "et:EXPLOIT"));
        // Not in the user's rules: the ET category's published meaning.
        let m = v.view(&alert(
            "suricata",
            "Suricata: Alert - ET MALWARE Cobalt Strike Beacon Observed",
        ));
        assert_eq!(
            (m.tier, m.category.as_str()),
            (Tier::Critical, "et:MALWARE")
        );
        let i = v.view(&alert("suricata", "ET INFO Observed DNS Query to .biz TLD"));
        assert_eq!(i.tier, Tier::Info);
        let a = v.view(&alert("aminer", "AMiner: New event type."));
        assert_eq!((a.tier, a.category.as_str()), (Tier::Unknown, "aminer"));
    }

    #[test]
    fn the_alerts_own_vendor_fields_come_first() {
        let v = Vendor::default();
        let mut a = alert("wazuh", "Wazuh: anything");
        a.vendor = Some(VendorMeta {
            level: Some(12),
            groups: vec!["pci_dss_1".into(), "rootcheck".into()],
            attack: vec!["T1014".into()],
            ..VendorMeta::default()
        });
        let w = v.view(&a);
        assert_eq!(
            (w.tier, w.category.as_str(), w.attack.len()),
            (Tier::High, "wazuh:rootcheck", 1)
        );
        a.vendor = Some(VendorMeta {
            severity: Some("Critical".into()),
            ..VendorMeta::default()
        });
        assert_eq!(v.view(&a).tier, Tier::Critical);
        a.vendor = Some(VendorMeta::default());
        assert_eq!(v.view(&a).tier, Tier::Unknown, "nothing said: fall through");
    }

    #[test]
    fn the_shared_rulesets_load() {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
        if !shared.exists() {
            return;
        }
        let v = Vendor::load(&RulesetsConfig {
            wazuh: vec![shared.join("wazuh-ruleset/rules")],
            suricata: vec![shared.join("suricata-rules/rules")],
            suricata_classification: Some(shared.join("suricata-rules/classification.config")),
        })
        .unwrap();
        assert!(v.summary().wazuh_rules > 2000, "{:?}", v.summary());
        assert!(v.summary().suricata_rules > 100, "{:?}", v.summary());
        assert!(v.summary().classtypes > 30, "{:?}", v.summary());
        let r = v.view(&alert(
            "wazuh",
            "Wazuh: Dovecot brute force attack (multiple auth failures).",
        ));
        assert_eq!(r.tier, Tier::Medium, "{r:?}");
        let err = Vendor::load(&RulesetsConfig {
            wazuh: vec![shared.join("suricata-rules/rules")],
            ..RulesetsConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("no Wazuh rule"), "{err}");
    }
}
