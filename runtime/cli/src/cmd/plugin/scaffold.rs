//! `weir plugin new NAME`: writes a plugin crate that builds as is for
//! wasm32-wasip2, from the templates in `template/`. Owns the mapping from
//! a weir name to a Rust crate and type name and the search for the guest
//! SDK; must never write into a directory that has anything in it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Where the SDK was when this binary was built; used only if it is still
/// there.
const SDK_AT_BUILD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../guest-sdk");

/// The SDK's version, which is the CLI's: one workspace version.
const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Longest crate name: cargo's file names (`lib<name>-<hash>.rlib`) must
/// stay under the usual 255-byte file name limit.
const CRATE_NAME_BYTES_MAX: usize = 200;

/// Names the template itself uses; a plugin type may not shadow them.
const TEMPLATE_NAMES: &[&str] = &[
    "BatchContext",
    "Message",
    "Patch",
    "Plugin",
    "Verdict",
    "Option",
    "Result",
    "Self",
    "Some",
    "String",
];

/// Names cargo refuses for a package or a library (Rust keywords, the
/// standard crates, cargo's own directories).
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "build",
    "const",
    "continue",
    "core",
    "crate",
    "deps",
    "do",
    "dyn",
    "else",
    "enum",
    "examples",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "incremental",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// What the templates are filled with.
#[derive(Debug)]
struct Names {
    /// The weir plugin name (what `weir plugin put` uploads it as).
    plugin: String,
    /// The cargo package name.
    krate: String,
    /// The Rust type implementing `Plugin`.
    ty: String,
}

pub(crate) fn run(name: &str, dir: Option<&Path>) -> anyhow::Result<()> {
    let names = names(name)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    check_empty(&dir)?;
    let sdk = find_sdk();
    let files = files(&names, sdk.as_deref());
    write(&dir, &files)?;

    let lib = lib_name(&names.krate);
    println!("created plugin {} in {}", names.plugin, dir.display());
    match &sdk {
        Some(path) => println!("it depends on the guest SDK at {}", path.display()),
        None => println!(
            "it depends on weir-guest {SDK_VERSION} by version: weir's source checkout was not found at {SDK_AT_BUILD}; \
             see the comment in Cargo.toml"
        ),
    }
    println!(
        "build it:  cd {} && cargo build --release --target wasm32-wasip2",
        dir.display()
    );
    println!(
        "try it:    weir plugin test target/wasm32-wasip2/release/{lib}.wasm --input samples.jsonl"
    );
    Ok(())
}

/// The crate and type names for a weir plugin name, or why there are none.
fn names(name: &str) -> anyhow::Result<Names> {
    weir_proto::frame::validate_name("plugin name", name)?;
    let mut krate = name.replace('.', "-");
    let starts_with_letter = krate.starts_with(|c: char| c.is_ascii_alphabetic());
    if !starts_with_letter || RESERVED.contains(&lib_name(&krate).as_str()) {
        krate = format!("weir-plugin-{krate}");
    }
    if krate.len() > CRATE_NAME_BYTES_MAX {
        bail!(
            "plugin name {name:?} is too long for a Rust crate (its crate would be {krate:?}, {} bytes; at most \
             {CRATE_NAME_BYTES_MAX})",
            krate.len()
        );
    }
    let mut ty = String::with_capacity(krate.len());
    for word in krate.split(['-', '_']).filter(|w| !w.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            ty.push(first.to_ascii_uppercase());
            ty.extend(chars);
        }
    }
    if TEMPLATE_NAMES.contains(&ty.as_str()) {
        ty.push_str("Plugin");
    }
    Ok(Names {
        plugin: name.to_string(),
        krate,
        ty,
    })
}

/// The library's name, as in `target/wasm32-wasip2/release/<lib>.wasm`.
fn lib_name(krate: &str) -> String {
    krate.replace('-', "_")
}

fn check_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty; choose another --dir",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if dir.exists() && !dir.is_dir() => Err(e)
            .with_context(|| format!("{} already exists and is not a directory", dir.display())),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// The guest SDK of the checkout this binary was built from, if it is
/// still there and still the SDK.
fn find_sdk() -> Option<PathBuf> {
    let dir = Path::new(SDK_AT_BUILD);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    if !manifest
        .lines()
        .any(|line| line.trim() == r#"name = "weir-guest""#)
    {
        return None;
    }
    dir.canonicalize().ok()
}

/// The dependency lines for the SDK: by path when it was found (and the
/// path can be written as a TOML string), else by version, with a comment.
fn sdk_dependency(sdk: Option<&Path>) -> String {
    let path = sdk
        .and_then(Path::to_str)
        .filter(|p| !p.chars().any(char::is_control));
    match path {
        Some(path) => {
            let quoted = path.replace('\\', "\\\\").replace('"', "\\\"");
            format!(
                "# The guest SDK of the weir checkout `weir plugin new` was built from.\n\
                 weir-guest = {{ path = \"{quoted}\" }}"
            )
        }
        None => format!(
            "# `weir plugin new` could not find weir's source checkout, so this asks for\n\
             # the guest SDK by version. If your registry does not have weir-guest, point\n\
             # this at the guest-sdk directory of a weir checkout instead:\n\
             # weir-guest = {{ path = \"../weir/guest-sdk\" }}\n\
             weir-guest = \"{SDK_VERSION}\""
        ),
    }
}

/// Every file of the crate: (path inside it, contents).
fn files(names: &Names, sdk: Option<&Path>) -> Vec<(&'static str, String)> {
    let fill = |template: &str| {
        template
            .replace("{{NAME}}", &names.plugin)
            .replace("{{CRATE}}", &names.krate)
            .replace("{{LIB}}", &lib_name(&names.krate))
            .replace("{{TYPE}}", &names.ty)
            .replace("{{CONTRACT}}", weir_plugin::CONTRACT_VERSION)
            .replace("{{SDK_DEP}}", &sdk_dependency(sdk))
    };
    vec![
        ("Cargo.toml", fill(include_str!("template/Cargo.toml.tmpl"))),
        ("src/lib.rs", fill(include_str!("template/lib.rs.tmpl"))),
        ("README.md", fill(include_str!("template/README.md.tmpl"))),
        (
            "samples.jsonl",
            fill(include_str!("template/samples.jsonl.tmpl")),
        ),
        (".gitignore", fill(include_str!("template/gitignore.tmpl"))),
    ]
}

fn write(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    for (relative, contents) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // create_new: never overwrite a file that appeared since the check.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(contents.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_crates_and_types() {
        let n = names("json-filter").expect("valid");
        assert_eq!(
            (n.krate.as_str(), n.ty.as_str()),
            ("json-filter", "JsonFilter")
        );
        let n = names("acme.audit_v2").expect("valid");
        assert_eq!(
            (n.krate.as_str(), n.ty.as_str()),
            ("acme-audit_v2", "AcmeAuditV2")
        );
        let n = names("3d-router").expect("valid");
        assert_eq!(
            (n.krate.as_str(), n.ty.as_str()),
            ("weir-plugin-3d-router", "WeirPlugin3dRouter")
        );
        let n = names("fn").expect("valid");
        assert_eq!(n.krate, "weir-plugin-fn");
        let n = names("plugin").expect("valid");
        assert_eq!(n.ty, "PluginPlugin");
        assert_eq!(names("Message").expect("valid").ty, "MessagePlugin");
    }

    #[test]
    fn invalid_names_are_refused() {
        for bad in ["", "a b", "über", "a/b", "../x"] {
            assert!(names(bad).is_err(), "{bad:?} must be refused");
        }
        let err = names(&"x".repeat(250)).expect_err("too long").to_string();
        assert!(err.contains("249"), "{err}");
        let err = names(&"x".repeat(240))
            .expect_err("too long for cargo")
            .to_string();
        assert!(err.contains("at most 200"), "{err}");
        assert!(names(&"x".repeat(200)).is_ok());
    }

    #[test]
    fn the_sdk_is_found_by_path_or_asked_for_by_version() {
        let names = names("my-filter").expect("valid");
        let files = files(&names, Some(Path::new("/src/weir/guest-sdk")));
        let manifest = &files[0].1;
        assert!(
            manifest.contains(r#"weir-guest = { path = "/src/weir/guest-sdk" }"#),
            "{manifest}"
        );
        assert!(manifest.contains(r#"name = "my-filter""#));
        assert!(manifest.contains(r#"crate-type = ["cdylib", "rlib"]"#));

        let files = super::files(&names, None);
        let manifest = &files[0].1;
        assert!(
            manifest.contains(&format!("weir-guest = \"{SDK_VERSION}\"")),
            "{manifest}"
        );
        assert!(manifest.contains("could not find"), "{manifest}");

        for (path, contents) in &files {
            assert!(
                !contents.contains("{{"),
                "{path} has an unfilled placeholder"
            );
        }
        let lib = &files[1].1;
        assert!(lib.contains("pub struct MyFilter"));
        assert!(lib.contains("export_plugin!(MyFilter);"));
        assert!(
            files[2]
                .1
                .contains("target/wasm32-wasip2/release/my_filter.wasm")
        );
        assert!(files.iter().any(|(path, _)| *path == "samples.jsonl"));
    }

    #[test]
    fn this_checkout_has_the_sdk() {
        let sdk = find_sdk().expect("the SDK next to the CLI's sources");
        assert!(sdk.join("src/lib.rs").exists());
    }

    #[test]
    fn only_empty_or_missing_directories_are_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(check_empty(dir.path()).is_ok());
        assert!(check_empty(&dir.path().join("new")).is_ok());
        std::fs::write(dir.path().join("file"), b"x").expect("write");
        let err = check_empty(dir.path()).expect_err("not empty").to_string();
        assert!(err.contains("not empty"), "{err}");
        assert!(check_empty(&dir.path().join("file")).is_err());
    }
}
