//! From the settings vestibule wants to the changes a configuration document needs: pure, so the
//! dry run, the file and the API back ends all show and apply the same thing.
//!
//! A setting is changed only when its current value is the product's default (or absent): a value an
//! admin chose differently is a conflict, reported by name and left alone unless forced. Running the
//! plan on its own result finds nothing to do, which is what makes `integrate` safe to repeat.

use serde_json::{Map, Value};

/// What vestibule wants for one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    /// Exactly this value.
    Exact(Value),
    /// A value no further along `order` than `ceiling` (a privacy ceiling): a value at or below it is
    /// kept, anything else (richer, or unknown) becomes `ceiling`.
    AtMost {
        order: &'static [&'static str],
        ceiling: &'static str,
    },
    /// This word among the space-separated words of a string (a list of origins): the words already
    /// there are kept, so adding it never overwrites an admin's choice and is never a conflict.
    Includes(String),
}

impl Want {
    /// Whether `current` already satisfies this want.
    fn satisfied_by(&self, current: &Value) -> bool {
        match self {
            Want::Exact(v) => v == current,
            Want::AtMost { order, ceiling } => {
                let rank = |s: &str| order.iter().position(|o| *o == s);
                match (current.as_str().and_then(rank), rank(ceiling)) {
                    (Some(c), Some(max)) => c <= max,
                    _ => false,
                }
            }
            Want::Includes(word) => current
                .as_str()
                .is_some_and(|s| s.split_whitespace().any(|w| w == word)),
        }
    }

    /// The value written when `current` does not satisfy this want.
    fn target(&self, current: Option<&Value>) -> Value {
        match self {
            Want::Exact(v) => v.clone(),
            Want::AtMost { ceiling, .. } => Value::String((*ceiling).to_string()),
            Want::Includes(word) => match current.and_then(Value::as_str).map(str::trim) {
                Some(s) if !s.is_empty() => Value::String(format!("{s} {word}")),
                _ => Value::String(word.clone()),
            },
        }
    }
}

/// One key of the product's configuration that vestibule manages.
#[derive(Debug, Clone)]
pub struct Setting {
    /// Dotted path: `ServiceSettings.SiteURL`.
    pub key: &'static str,
    pub want: Want,
    /// The product's defaults for this key (current and earlier versions): values vestibule may
    /// replace without being forced, because no admin chose them.
    pub defaults: Vec<Value>,
    /// Whether a document without the key gets it. False for keys that recent versions removed, so
    /// that vestibule never adds a key the product ignores.
    pub add_if_absent: bool,
    /// Said when the key is absent and not added (how to get the effect in this version instead).
    pub if_absent: &'static str,
}

impl Setting {
    /// `key` set to exactly `want`, replacing any of `defaults`, added when absent.
    pub fn exact(key: &'static str, want: Value, defaults: &[Value]) -> Setting {
        Setting {
            key,
            want: Want::Exact(want),
            defaults: defaults.to_vec(),
            add_if_absent: true,
            if_absent: "",
        }
    }
}

/// One change: `key: old -> new`.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: &'static str,
    /// `None`: the document has no such key yet.
    pub old: Option<Value>,
    pub new: Value,
}

/// What a document needs to match the settings.
#[derive(Debug, Default)]
pub struct Plan {
    /// Changes to write (including forced ones).
    pub changes: Vec<Change>,
    /// Values an admin set differently (left alone unless forced; when forced, also in `changes`).
    pub conflicts: Vec<Change>,
    /// Keys the document does not have and that are not added, with what to do instead.
    pub absent: Vec<(&'static str, &'static str)>,
}

impl Plan {
    /// Compare `doc` with `settings`.
    pub fn new(doc: &Value, settings: &[Setting], force: bool) -> Plan {
        let mut plan = Plan::default();
        for s in settings {
            let current = get(doc, s.key);
            match current {
                Some(cur) if s.want.satisfied_by(cur) => {}
                Some(cur) => {
                    let change = Change {
                        key: s.key,
                        old: Some(cur.clone()),
                        new: s.want.target(Some(cur)),
                    };
                    if s.defaults.contains(cur) || matches!(s.want, Want::Includes(_)) {
                        plan.changes.push(change);
                    } else {
                        if force {
                            plan.changes.push(change.clone());
                        }
                        plan.conflicts.push(change);
                    }
                }
                None if s.add_if_absent => plan.changes.push(Change {
                    key: s.key,
                    old: None,
                    new: s.want.target(None),
                }),
                None => plan.absent.push((s.key, s.if_absent)),
            }
        }
        plan
    }

    /// Whether applying would be refused (conflicts, not forced).
    pub fn refused(&self, force: bool) -> bool {
        !force && !self.conflicts.is_empty()
    }
}

/// The parts of a dotted path. A part holding dots (a plugin id in `PluginSettings.Plugins`) is
/// written in brackets: `PluginSettings.Plugins[com.onlyoffice.mattermost].desjwt`.
pub fn parts(key: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = key;
    while !rest.is_empty() {
        let (part, after) = match rest.strip_prefix('[') {
            Some(inner) => {
                let end = inner.find(']').unwrap_or(inner.len());
                (&inner[..end], inner.get(end + 1..).unwrap_or(""))
            }
            None => {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        out.push(part);
        rest = after.strip_prefix('.').unwrap_or(after);
    }
    out
}

/// The value at a dotted path.
pub fn get<'a>(doc: &'a Value, key: &str) -> Option<&'a Value> {
    parts(key).into_iter().try_fold(doc, |v, part| v.get(part))
}

/// Set the value at a dotted path, creating missing sections (appended after the existing keys).
/// Returns false when a section on the path is not an object (the document is not of the shape
/// expected, and nothing is changed).
pub fn set(doc: &mut Value, key: &str, value: Value) -> bool {
    let mut parts = parts(key);
    let Some(last) = parts.pop() else { return false };
    let mut cur = doc;
    for part in parts {
        let Some(obj) = cur.as_object_mut() else {
            return false;
        };
        cur = obj.entry(part).or_insert_with(|| Value::Object(Map::new()));
    }
    match cur.as_object_mut() {
        Some(obj) => {
            obj.insert(last.to_string(), value);
            true
        }
        None => false,
    }
}

/// Sections of Mattermost's configuration that are maps (plugin id -> settings), not structs.
/// Mattermost's patch merges structs field by field but replaces a map whole ("maps and slices are
/// treated as pointers, and merged as a single value"), so a patch carrying one plugin's key would
/// wipe every other plugin's settings, and that plugin's other keys.
pub const WHOLE_MAPS: &[&str] = &["Plugins", "PluginStates"];

/// The smallest document holding `changes`, nested by section: what a patch API takes. A change
/// inside one of [`WHOLE_MAPS`] carries that whole map from `doc` (the document as read) with the
/// changes applied: values Mattermost masked in its answer go back masked, and Mattermost puts the
/// real ones back (it "desanitizes" plugin settings equal to its mask).
pub fn patch_document(doc: &Value, changes: &[Change]) -> Value {
    let mut applied = doc.clone();
    for c in changes {
        set(&mut applied, c.key, c.new.clone());
    }
    let mut patch = Value::Object(Map::new());
    for c in changes {
        let parts = parts(c.key);
        match parts.iter().position(|p| WHOLE_MAPS.contains(p)) {
            Some(i) => {
                let prefix = &parts[..=i];
                let whole = prefix
                    .iter()
                    .try_fold(&applied, |v, part| v.get(*part))
                    .cloned()
                    .unwrap_or(Value::Null);
                set_parts(&mut patch, prefix, whole);
            }
            None => {
                set(&mut patch, c.key, c.new.clone());
            }
        }
    }
    patch
}

/// [`set`] over parts already split.
fn set_parts(doc: &mut Value, parts: &[&str], value: Value) {
    let Some((last, path)) = parts.split_last() else {
        return;
    };
    let mut cur = doc;
    for part in path {
        let Some(obj) = cur.as_object_mut() else { return };
        cur = obj.entry(*part).or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(obj) = cur.as_object_mut() {
        obj.insert((*last).to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn exact(key: &'static str, v: Value, defaults: Vec<Value>) -> Setting {
        Setting {
            key,
            want: Want::Exact(v),
            defaults,
            add_if_absent: true,
            if_absent: "",
        }
    }

    #[test]
    fn default_values_change_admin_values_conflict_and_a_second_run_is_empty() {
        let mut doc = json!({"A": {"x": "", "y": "admin", "z": 1}});
        let settings = vec![
            exact("A.x", json!("new"), vec![json!("")]),
            exact("A.y", json!("ours"), vec![json!("")]),
            exact("A.z", json!(1), vec![json!(0)]),
            exact("B.w", json!(true), vec![]),
        ];
        let plan = Plan::new(&doc, &settings, false);
        let keys: Vec<_> = plan.changes.iter().map(|c| c.key).collect();
        assert_eq!(keys, ["A.x", "B.w"]);
        assert_eq!(plan.conflicts.len(), 1);
        assert_eq!(plan.conflicts[0].key, "A.y");
        assert!(plan.refused(false));

        let forced = Plan::new(&doc, &settings, true);
        assert_eq!(forced.changes.len(), 3);
        for c in &forced.changes {
            assert!(set(&mut doc, c.key, c.new.clone()));
        }
        let again = Plan::new(&doc, &settings, false);
        assert!(again.changes.is_empty() && again.conflicts.is_empty());
    }

    #[test]
    fn a_ceiling_keeps_poorer_values_and_lowers_richer_ones() {
        const ORDER: &[&str] = &["id_loaded", "generic_no_channel", "generic", "full"];
        let s = Setting {
            key: "E.P",
            want: Want::AtMost {
                order: ORDER,
                ceiling: "generic",
            },
            defaults: vec![json!("full")],
            add_if_absent: true,
            if_absent: "",
        };
        let plan = |v: &str| Plan::new(&json!({"E": {"P": v}}), std::slice::from_ref(&s), false);
        assert!(plan("generic_no_channel").changes.is_empty());
        assert!(plan("generic").changes.is_empty());
        assert_eq!(plan("full").changes[0].new, json!("generic"));
        // Unknown to us: never assumed to be poor enough, and not a default either.
        assert_eq!(plan("something").conflicts.len(), 1);
    }

    #[test]
    fn removed_keys_are_not_added() {
        let s = Setting {
            key: "T.Gone",
            want: Want::Exact(json!(false)),
            defaults: vec![json!(true)],
            add_if_absent: false,
            if_absent: "use the permission instead",
        };
        let plan = Plan::new(&json!({"T": {}}), &[s], false);
        assert!(plan.changes.is_empty());
        assert_eq!(plan.absent, [("T.Gone", "use the permission instead")]);
    }

    #[test]
    fn a_bracketed_part_may_hold_dots() {
        assert_eq!(
            parts("P.Plugins[com.onlyoffice.mattermost].desjwt"),
            ["P", "Plugins", "com.onlyoffice.mattermost", "desjwt"]
        );
        let mut doc = json!({"P": {"Plugins": {}}});
        assert!(set(&mut doc, "P.Plugins[a.b].k", json!("v")));
        assert_eq!(doc, json!({"P": {"Plugins": {"a.b": {"k": "v"}}}}));
        assert_eq!(get(&doc, "P.Plugins[a.b].k"), Some(&json!("v")));
    }

    #[test]
    fn a_patch_holds_only_the_changes_nested() {
        let p = patch_document(
            &json!({"S": {"A": "", "C": 1}}),
            &[
                Change {
                    key: "S.A",
                    old: None,
                    new: json!("a"),
                },
                Change {
                    key: "S.B",
                    old: None,
                    new: json!(["x"]),
                },
            ],
        );
        assert_eq!(p, json!({"S": {"A": "a", "B": ["x"]}}));
    }

    #[test]
    fn a_plugin_change_carries_every_plugin_because_mattermost_replaces_the_map() {
        let doc = json!({"PluginSettings": {"Enable": true, "Plugins": {
            "com.onlyoffice.mattermost": {"desaddress": "https://office.example.org/", "desjwt": ""},
            "com.github": {"secret": "********************************"}
        }}});
        let p = patch_document(
            &doc,
            &[Change {
                key: "PluginSettings.Plugins[com.onlyoffice.mattermost].desjwt",
                old: Some(json!("")),
                new: json!("s3cret"),
            }],
        );
        assert_eq!(
            p,
            json!({"PluginSettings": {"Plugins": {
                "com.onlyoffice.mattermost": {"desaddress": "https://office.example.org/", "desjwt": "s3cret"},
                "com.github": {"secret": "********************************"}
            }}})
        );
    }

    #[test]
    fn an_origin_is_added_to_an_admins_list_without_a_conflict() {
        let s = Setting {
            key: "P.Plugins[notifymatters].trustedorigin",
            want: Want::Includes("https://mail.example.org".into()),
            defaults: vec![json!("")],
            add_if_absent: true,
            if_absent: "",
        };
        let doc =
            json!({"P": {"Plugins": {"notifymatters": {"trustedorigin": "https://intra.example.org"}}}});
        let plan = Plan::new(&doc, std::slice::from_ref(&s), false);
        assert!(plan.conflicts.is_empty());
        assert_eq!(
            plan.changes[0].new,
            json!("https://intra.example.org https://mail.example.org")
        );
        let mut after = doc.clone();
        set(&mut after, s.key, plan.changes[0].new.clone());
        assert!(Plan::new(&after, &[s], false).changes.is_empty());
    }
}
