//! The backtest's HTML report and its per-site chart (SVG), self-contained.

use super::score::Summary;
use crate::text::esc;

/// Precision, recall and F1 per site as an inline SVG bar chart (no external assets).
pub fn site_chart_svg(summary: &Summary) -> String {
    use std::fmt::Write;
    const BAR: usize = 16;
    const GAP: usize = 48;
    const HEIGHT: f64 = 120.0;
    let group = 3 * BAR + GAP;
    let width = 40 + group * summary.per_site.len().max(1);
    let mut svg = format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"170\" role=\"img\" aria-label=\"precision, recall and F1 per site\">\
         <line x1=\"30\" y1=\"130\" x2=\"{width}\" y2=\"130\" stroke=\"#8c959f\"/>\
         <text x=\"0\" y=\"14\" font-size=\"10\">1.0</text>\
         <text x=\"0\" y=\"130\" font-size=\"10\">0</text>"
    );
    for (i, (site, s)) in summary.per_site.iter().enumerate() {
        let x0 = 36 + i * group;
        for (j, (value, color)) in [
            (s.precision, "#54aeff"),
            (s.recall, "#4ac26b"),
            (s.f1, "#d4a72c"),
        ]
        .into_iter()
        .enumerate()
        {
            let h = (value.clamp(0.0, 1.0) * HEIGHT).round();
            let _ = write!(
                svg,
                "<rect x=\"{}\" y=\"{}\" width=\"{BAR}\" height=\"{h}\" fill=\"{color}\">\
                 <title>{value:.3}</title></rect>",
                x0 + j * BAR,
                130.0 - h
            );
        }
        let short: String = site.chars().take(14).collect();
        let _ = write!(
            svg,
            "<text x=\"{x0}\" y=\"146\" font-size=\"11\"><title>{}</title>{}</text>",
            esc(site),
            esc(&short)
        );
    }
    svg.push_str(
        "<text x=\"36\" y=\"166\" font-size=\"11\"><tspan fill=\"#0969da\">■ precision</tspan> \
         <tspan fill=\"#1a7f37\">■ recall</tspan> <tspan fill=\"#9a6700\">■ F1</tspan></text></svg>",
    );
    svg
}

/// The summary as a self-contained HTML page (no external assets): the headline figures, the
/// confusion matrix, per-site bars and per-role latency.
pub fn report_html(summary: &Summary) -> String {
    use std::fmt::Write;
    let c = &summary.confusion;
    let bar = |value: f64, class: &str| {
        format!(
            "<div class=\"bar\"><span class=\"{class}\" style=\"width:{:.1}%\"></span><em>{value:.3}</em></div>",
            (value * 100.0).clamp(0.0, 100.0)
        )
    };
    let mut sites = String::new();
    for (site, s) in &summary.per_site {
        let _ = write!(
            sites,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(site),
            s.tickets,
            s.confusion.tp + s.confusion.fn_,
            s.confusion.tp + s.confusion.fp,
            bar(s.precision, "p"),
            bar(s.recall, "r"),
            bar(s.f1, "f"),
            s.confusion.fp
        );
    }
    let mut roles = String::new();
    for (role, r) in &summary.roles {
        let reasoners = r
            .reasoners
            .iter()
            .map(|(k, n)| format!("{} {n}", esc(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            roles,
            "<tr><th>{}</th><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}/{}</td><td>{reasoners}</td></tr>",
            esc(role),
            r.engaged,
            r.wall_ms_p50,
            r.wall_ms_p95,
            r.tool_calls,
            r.tokens_in,
            r.tokens_out
        );
    }
    let sel = &summary.selection;
    let scope = format!(
        "{} tickets from {}{}{}{}. {}",
        summary.tickets,
        esc(&sel.file),
        if sel.sites.is_empty() {
            String::new()
        } else {
            format!(", sites {}", esc(&sel.sites.join(", ")))
        },
        match sel.sample {
            Some(n) => format!(
                ", sample of {n}{} (seed {})",
                if sel.stratify {
                    " stratified 50/50"
                } else {
                    ""
                },
                sel.seed
            ),
            None => String::new(),
        },
        if sel.leave_one_site_out {
            ", each site replayed with the other sites as history"
        } else {
            ""
        },
        esc(&summary.priors.to_string())
    );
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>soc-runtime backtest</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1b1f24;max-width:70em}}
h1{{font-size:1.5em;margin-bottom:.2em}} .scope{{color:#57606a;margin-top:0}}
.kpis{{display:flex;gap:1em;margin:1.5em 0}} .kpi{{border:1px solid #d0d7de;border-radius:6px;padding:.8em 1.2em}}
.kpi b{{display:block;font-size:1.8em}} table{{border-collapse:collapse;margin:1em 0 2em}}
th,td{{border-bottom:1px solid #d0d7de;padding:.35em .8em;text-align:right}} th{{text-align:left}}
.matrix td{{font-size:1.3em;min-width:5em;text-align:center}} .tp,.tn{{background:#dafbe1}} .fp,.fn{{background:#ffebe9}}
.bar{{position:relative;width:12em;height:1.2em;background:#f6f8fa;text-align:left}} .bar span{{position:absolute;left:0;top:0;bottom:0}}
.bar .p{{background:#54aeff}} .bar .r{{background:#4ac26b}} .bar .f{{background:#d4a72c}}
.bar em{{position:relative;font-style:normal;padding-left:.3em}}
</style></head><body>
<h1>Backtest: escalation to the IR Lead against the analysts</h1>
<p class="scope">{scope}; replayed and scored in {elapsed:.2} s</p>
<div class="kpis"><div class="kpi">precision<b>{precision:.3}</b></div><div class="kpi">recall<b>{recall:.3}</b></div><div class="kpi">F1<b>{f1:.3}</b></div><div class="kpi">tickets<b>{tickets}</b></div></div>
<h2>Confusion matrix</h2>
<table class="matrix"><tr><th></th><th>analysts escalated</th><th>analysts closed</th></tr>
<tr><th>SOC escalated</th><td class="tp">{tp}</td><td class="fp">{fp}</td></tr>
<tr><th>SOC did not</th><td class="fn">{fn_}</td><td class="tn">{tn}</td></tr></table>
<h2>Per site</h2>
<table><tr><th>site</th><th>tickets</th><th>should escalate</th><th>escalated</th><th>precision</th><th>recall</th><th>F1</th><th>false alarms</th></tr>{sites}</table>
<h2>Per role</h2>
<table><tr><th>role</th><th>engaged</th><th>wall p50 ms</th><th>wall p95 ms</th><th>tool calls</th><th>tokens in/out</th><th>reasoners</th></tr>{roles}</table>
</body></html>
"#,
        elapsed = summary.elapsed_s,
        precision = summary.precision,
        recall = summary.recall,
        f1 = summary.f1,
        tickets = summary.tickets,
        tp = c.tp,
        fp = c.fp,
        fn_ = c.fn_,
        tn = c.tn,
    )
}
