//! `attack.lookup`: MITRE ATT&CK techniques and groups, from a STIX bundle named in config.
//!
//! Only what a lookup needs is kept: each active technique (id, name, tactics, a short
//! description), each group (id, name, aliases, a short description) and which groups use which
//! techniques. Revoked and deprecated objects are left out. The runtime never needs a bundle to
//! start: without one there is no `attack.lookup`, and Threat Intel's rules name techniques from
//! their own table.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use super::LoadError;

/// Characters of a description kept.
const DESCRIPTION_CHARS: usize = 600;
/// Most search results.
const MAX_RESULTS: usize = 10;

/// A technique or sub-technique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Technique {
    /// `T1110` or `T1110.001`.
    pub id: String,
    /// Its name (a sub-technique's includes its parent's: `Brute Force: Password Guessing`).
    pub name: String,
    /// Tactics (kill-chain phases).
    pub tactics: Vec<String>,
    /// The start of its description, citations removed.
    pub description: String,
    groups: Vec<usize>,
}

/// A group (intrusion set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// `G0007`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Other names it goes by.
    pub aliases: Vec<String>,
    /// The start of its description, citations removed.
    pub description: String,
    techniques: Vec<usize>,
}

/// The bundle, indexed for lookups.
#[derive(Debug, Default)]
pub struct Attack {
    techniques: Vec<Technique>,
    groups: Vec<Group>,
    technique_ids: HashMap<String, usize>,
    group_names: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct Bundle {
    objects: Vec<Object>,
}

#[derive(Deserialize)]
struct Object {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    external_references: Vec<Reference>,
    #[serde(default)]
    kill_chain_phases: Vec<Phase>,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    x_mitre_deprecated: bool,
    #[serde(default)]
    relationship_type: Option<String>,
    #[serde(default)]
    source_ref: Option<String>,
    #[serde(default)]
    target_ref: Option<String>,
}

#[derive(Deserialize)]
struct Reference {
    source_name: String,
    #[serde(default)]
    external_id: Option<String>,
}

#[derive(Deserialize)]
struct Phase {
    phase_name: String,
}

impl Attack {
    /// Loads a STIX bundle (JSON, plain or gzip).
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let file = path.display().to_string();
        let reader =
            crate::ingest::open_text(path).map_err(|e| LoadError::Read(file.clone(), e))?;
        let bundle: Bundle = serde_json::from_reader(reader)
            .map_err(|e| LoadError::Parse(format!("{file} is not a STIX bundle"), e))?;
        let attack = Self::from_bundle(bundle);
        if attack.techniques.is_empty() {
            return Err(LoadError::Empty(file, "no ATT&CK technique"));
        }
        Ok(attack)
    }

    fn from_bundle(bundle: Bundle) -> Self {
        let mut attack = Attack::default();
        let mut by_stix: HashMap<String, (bool, usize)> = HashMap::new();
        let mut uses = Vec::new();
        for o in bundle.objects {
            if o.revoked || o.x_mitre_deprecated {
                continue;
            }
            let external = o
                .external_references
                .iter()
                .find(|r| r.source_name == "mitre-attack")
                .and_then(|r| r.external_id.clone());
            match (o.kind.as_str(), external) {
                ("attack-pattern", Some(id)) => {
                    by_stix.insert(o.id, (true, attack.techniques.len()));
                    attack.techniques.push(Technique {
                        id,
                        name: o.name,
                        tactics: o
                            .kill_chain_phases
                            .into_iter()
                            .map(|p| p.phase_name)
                            .collect(),
                        description: short(o.description.as_deref().unwrap_or("")),
                        groups: Vec::new(),
                    });
                }
                ("intrusion-set", Some(id)) => {
                    by_stix.insert(o.id, (false, attack.groups.len()));
                    attack.groups.push(Group {
                        id,
                        aliases: o.aliases.into_iter().filter(|a| *a != o.name).collect(),
                        name: o.name,
                        description: short(o.description.as_deref().unwrap_or("")),
                        techniques: Vec::new(),
                    });
                }
                ("relationship", _) if o.relationship_type.as_deref() == Some("uses") => {
                    if let (Some(s), Some(t)) = (o.source_ref, o.target_ref) {
                        uses.push((s, t));
                    }
                }
                _ => {}
            }
        }
        for (source, target) in uses {
            if let (Some(&(false, g)), Some(&(true, t))) =
                (by_stix.get(&source), by_stix.get(&target))
            {
                attack.groups[g].techniques.push(t);
                attack.techniques[t].groups.push(g);
            }
        }
        // Sub-techniques carry their parent's name, the way ATT&CK shows them.
        let parents: HashMap<String, String> = attack
            .techniques
            .iter()
            .filter(|t| !t.id.contains('.'))
            .map(|t| (t.id.clone(), t.name.clone()))
            .collect();
        for t in &mut attack.techniques {
            if let Some((parent, _)) = t.id.split_once('.')
                && let Some(name) = parents.get(parent)
            {
                t.name = format!("{name}: {}", t.name);
            }
        }
        for (i, t) in attack.techniques.iter().enumerate() {
            attack.technique_ids.insert(t.id.to_uppercase(), i);
        }
        for (i, g) in attack.groups.iter().enumerate() {
            for name in std::iter::once(&g.name).chain(&g.aliases).chain([&g.id]) {
                attack.group_names.entry(name.to_lowercase()).or_insert(i);
            }
        }
        attack
    }

    /// Techniques and groups loaded.
    pub fn counts(&self) -> (usize, usize) {
        (self.techniques.len(), self.groups.len())
    }

    /// The technique with this id (`T1110`, `t1110.001`).
    pub fn technique(&self, id: &str) -> Option<&Technique> {
        self.technique_ids
            .get(&id.trim().to_uppercase())
            .map(|&i| &self.techniques[i])
    }

    /// The group with this id, name or alias (any case).
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.group_names
            .get(&name.trim().to_lowercase())
            .map(|&i| &self.groups[i])
    }

    /// A technique as the tool shows it, with the groups known to use it.
    pub(crate) fn technique_json(&self, t: &Technique) -> Value {
        let groups: Vec<String> = t
            .groups
            .iter()
            .take(15)
            .map(|&g| format!("{} {}", self.groups[g].id, self.groups[g].name))
            .collect();
        json!({"id": t.id, "name": t.name, "tactics": t.tactics, "description": t.description,
               "groups_using_it": groups, "groups_using_it_total": t.groups.len()})
    }

    /// A group as the tool shows it, with the techniques it is known to use.
    pub(crate) fn group_json(&self, g: &Group) -> Value {
        let mut ids: Vec<&str> = g
            .techniques
            .iter()
            .map(|&t| self.techniques[t].id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        json!({"id": g.id, "name": g.name, "aliases": g.aliases, "description": g.description,
               "technique_ids": ids})
    }

    /// Techniques whose name holds every word of `text`, then groups whose name or an alias
    /// holds it.
    pub fn search(&self, text: &str) -> Value {
        let words: Vec<String> = text
            .split_whitespace()
            .map(str::to_lowercase)
            .filter(|w| w.len() > 1)
            .collect();
        if words.is_empty() {
            return json!({"techniques": [], "groups": []});
        }
        let techniques: Vec<Value> = self
            .techniques
            .iter()
            .filter(|t| {
                let name = t.name.to_lowercase();
                words.iter().all(|w| name.contains(w.as_str()))
            })
            .take(MAX_RESULTS)
            .map(|t| json!({"id": t.id, "name": t.name, "tactics": t.tactics}))
            .collect();
        let phrase = words.join(" ");
        let groups: Vec<Value> = self
            .groups
            .iter()
            .filter(|g| {
                std::iter::once(&g.name)
                    .chain(&g.aliases)
                    .any(|n| n.to_lowercase().contains(&phrase))
            })
            .take(MAX_RESULTS)
            .map(|g| json!({"id": g.id, "name": g.name}))
            .collect();
        json!({"techniques": techniques, "groups": groups})
    }
}

/// The start of an ATT&CK description: markdown links to their text, citations removed.
fn short(description: &str) -> String {
    let mut out = String::with_capacity(DESCRIPTION_CHARS + 3);
    let mut rest = description;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("(Citation:") {
            rest = after.split_once(')').map_or("", |(_, r)| r);
            continue;
        }
        if c == '['
            && let Some((text, after)) = rest[1..].split_once("](")
            && let Some((_, tail)) = after.split_once(')')
            && !text.contains('[')
        {
            out.push_str(text);
            rest = tail;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if out.chars().count() >= DESCRIPTION_CHARS {
            out.push_str("...");
            break;
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Attack {
        let bundle: Bundle = serde_json::from_value(json!({"objects": [
            {"type": "attack-pattern", "id": "attack-pattern--1", "name": "Brute Force",
             "description": "Adversaries may use [brute force](https://x) (Citation: X 2020) to guess.",
             "kill_chain_phases": [{"kill_chain_name": "mitre-attack", "phase_name": "credential-access"}],
             "external_references": [{"source_name": "mitre-attack", "external_id": "T1110"}]},
            {"type": "attack-pattern", "id": "attack-pattern--2", "name": "Password Guessing",
             "external_references": [{"source_name": "mitre-attack", "external_id": "T1110.001"}]},
            {"type": "attack-pattern", "id": "attack-pattern--3", "name": "Old", "revoked": true,
             "external_references": [{"source_name": "mitre-attack", "external_id": "T9999"}]},
            {"type": "intrusion-set", "id": "intrusion-set--1", "name": "APT28",
             "aliases": ["APT28", "Fancy Bear"],
             "external_references": [{"source_name": "mitre-attack", "external_id": "G0007"}]},
            {"type": "relationship", "id": "relationship--1", "relationship_type": "uses",
             "source_ref": "intrusion-set--1", "target_ref": "attack-pattern--2"}
        ]}))
        .unwrap();
        Attack::from_bundle(bundle)
    }

    #[test]
    fn techniques_and_groups_are_found_by_id_name_and_alias() {
        let attack = tiny();
        assert_eq!(attack.counts(), (2, 1));
        let t = attack.technique("t1110").unwrap();
        assert_eq!(t.tactics, ["credential-access"]);
        assert_eq!(t.description, "Adversaries may use brute force to guess.");
        let sub = attack.technique("T1110.001").unwrap();
        assert_eq!(sub.name, "Brute Force: Password Guessing");
        assert_eq!(
            attack.technique_json(sub)["groups_using_it"][0],
            "G0007 APT28"
        );
        assert!(
            attack.technique("T9999").is_none(),
            "revoked objects are left out"
        );
        let g = attack.group("fancy bear").unwrap();
        assert_eq!(attack.group_json(g)["technique_ids"], json!(["T1110.001"]));
        assert_eq!(attack.group("G0007").unwrap().name, "APT28");
        let found = attack.search("password brute");
        assert_eq!(found["techniques"][0]["id"], "T1110.001");
        assert_eq!(attack.search("fancy")["groups"][0]["id"], "G0007");
    }
}
