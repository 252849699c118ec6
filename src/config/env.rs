//! The `PRISM_*` environment layer, and what prism says about a variable that is
//! not one of its keys.
//!
//! Every `PRISM_*` variable except `PRISM_CONFIG` (the file, `--config`) is read as
//! a key: `PRISM_<SECTION>__<KEY>` sets `section.key`. A variable that names no key
//! is refused, like an unknown key in the file, because the likely cause is a typo
//! (`PRISM_HTTP_TOKEN` with one underscore) whose setting would otherwise be
//! silently dropped: an API without its token. figment's own message ("unknown
//! field `bin`") names neither the variable nor what was meant, so the refusal is
//! rewritten to name the variable, the key it maps to, the nearest real key and
//! the rule, and how to keep a wrapper script's own variable away from prism.

use figment::providers::Env;

/// The prefix of prism's environment keys.
pub const PREFIX: &str = "PRISM_";

/// The variable `--config` reads (clap): a path, not a configuration key.
pub const CONFIG_FILE_VAR: &str = "PRISM_CONFIG";

/// The environment provider: `PRISM_<SECTION>__<KEY>`, without `PRISM_CONFIG`.
pub fn provider() -> Env {
    Env::prefixed(PREFIX).split("__").ignore(&["config"])
}

/// A `PRISM_*` variable that names no configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVar {
    /// The variable as set, e.g. `PRISM_BIN`.
    pub var: String,
    /// The key it maps to, e.g. `bin`.
    pub key: String,
    /// The valid key closest to it, e.g. `rtmp.chunk_size`.
    pub nearest: String,
}

impl std::fmt::Display for UnknownVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "environment variable {var} is not a configuration key: it would set `{key}`, \
             which prism does not have; the nearest key is `{nearest}` ({nearest_var}). \
             Every {PREFIX}* variable except {CONFIG_FILE_VAR} is read as configuration, \
             {PREFIX}<SECTION>__<KEY> setting section.key (two underscores between section \
             and key: PRISM_RELAY__CHUNK_SIZE -> relay.chunk_size). A variable not meant \
             for prism needs another name, or removing from prism's environment \
             (`env -u {var} prism ...`)",
            var = self.var,
            key = self.key,
            nearest = self.nearest,
            nearest_var = var_for(&self.nearest),
        )
    }
}

/// The variable that sets `key`: `relay.chunk_size` -> `PRISM_RELAY__CHUNK_SIZE`.
pub fn var_for(key: &str) -> String {
    format!("{PREFIX}{}", key.replace('.', "__").to_ascii_uppercase())
}

/// The key a `PRISM_*` variable sets (`PRISM_RELAY__CHUNK_SIZE` ->
/// `relay.chunk_size`), as figment's [`provider`] reads it; `None` for other
/// variables and for `PRISM_CONFIG`.
pub fn key_of(var: &str) -> Option<String> {
    let head = var.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = var[PREFIX.len()..].trim();
    let key = rest.replace("__", ".").to_ascii_lowercase();
    (!key.is_empty() && key != "config").then_some(key)
}

/// When figment refused an unknown field that came from the environment: the
/// variable that carried it, and the nearest of `candidates` (every valid key).
///
/// `path` is the unknown field's path as figment reports it (ending with `field`,
/// or, when it does not, the table the field was found in).
pub fn explain(
    vars: impl IntoIterator<Item = String>,
    path: &[String],
    field: &str,
    candidates: &[String],
) -> Option<UnknownVar> {
    let mut unknown = path.to_vec();
    if unknown.last().map(String::as_str) != Some(field) {
        unknown.push(field.to_owned());
    }
    let unknown = unknown.join(".").to_ascii_lowercase();
    let (var, key) = vars.into_iter().find_map(|var| {
        let key = key_of(&var)?;
        let matches = key == unknown || key.starts_with(&format!("{unknown}."));
        matches.then_some((var, key))
    })?;
    Some(UnknownVar {
        nearest: nearest(&key, candidates),
        var,
        key,
    })
}

/// The candidate closest to `key`, comparing both with `.` read as `_`, so that a
/// single underscore where two belong (`relay_chunk_size`) still finds its key.
fn nearest(key: &str, candidates: &[String]) -> String {
    let flat = |s: &str| s.replace('.', "_");
    let key = flat(key);
    candidates
        .iter()
        .min_by_key(|candidate| strsim::damerau_levenshtein(&key, &flat(candidate)))
        .cloned()
        .unwrap_or_default()
}

/// Every key path in `value`, dotted (`rtmp.chunk_size`), for [`explain`].
pub fn keys_of(value: &toml::Value) -> Vec<String> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => {
                for (name, inner) in table {
                    let path = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&path, inner, out);
                }
            }
            _ if !prefix.is_empty() => out.push(prefix.to_owned()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_map_to_keys_and_back() {
        assert_eq!(
            key_of("PRISM_RELAY__CHUNK_SIZE").as_deref(),
            Some("relay.chunk_size")
        );
        assert_eq!(key_of("PRISM_BIN").as_deref(), Some("bin"));
        assert_eq!(key_of("PRISM_CONFIG"), None);
        assert_eq!(key_of("HOME"), None);
        assert_eq!(var_for("relay.chunk_size"), "PRISM_RELAY__CHUNK_SIZE");
    }

    #[test]
    fn the_nearest_key_forgives_a_single_underscore() {
        let keys = ["rtmp.chunk_size", "relay.chunk_size", "http.token"].map(String::from);
        assert_eq!(nearest("relay_chunk_size", &keys), "relay.chunk_size");
        assert_eq!(nearest("http_tokn", &keys), "http.token");
    }
}
