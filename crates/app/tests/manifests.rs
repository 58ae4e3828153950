//! The deployment files agree with the binary they deploy: every container in
//! deploy/kubernetes runs a command the binary has, with flags it knows and settings it knows
//! (loaded by the real settings loader), files and directories it names are mounted, every
//! pod meets the restricted Pod Security Standard, every role is deployed and reachable, the
//! Ingress routes every public route of the route table and no internal one, the
//! external-provider overlay's settings load too, the network policies allow exactly the calls
//! the roles make, and the Dockerfile builds in stages and runs
//! unprivileged. The checkers are tested on bad snippets as well, so a green run means the
//! manifests were checked, not skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use examplebank::roles::{Roles, ROLE_NAMES};
use examplebank::routes::ROUTES;
use examplebank::settings::{all_keys, Overrides, Settings};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_examplebank");
/// The image's ENTRYPOINT (Dockerfile); a manifest may repeat it as `command`, nothing else.
const ENTRYPOINT: &str = "/usr/local/bin/examplebank";
/// Settings that are secrets and may come from `EXAMPLEBANK_<NAME>_FILE` instead.
const SECRET_SETTINGS: &[&str] = &[
    "database_url",
    "master_key",
    "rewards_client_secret",
    "transactions_client_secret",
    "erasure_client_secret",
];
/// Settings naming a file or directory the process reads or writes: they must point into a
/// volume, since the root file system is read-only.
const PATH_SETTINGS: &[&str] = &[
    "EXAMPLEBANK_DATA_DIR",
    "EXAMPLEBANK_KEYS_DIR",
    "EXAMPLEBANK_SIGNING_KEYS_DIR",
    "EXAMPLEBANK_AUDIT_CHECKPOINT_FILE",
    "EXAMPLEBANK_TLS_CERT",
    "EXAMPLEBANK_TLS_KEY",
];
const NAMESPACE: &str = "examplebank";
/// The overlay for an external OpenID provider: its patches' settings are checked too.
const OVERLAY_DIR: &str = "deploy/kubernetes-external-oidc";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One YAML document of a file.
struct Doc {
    file: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }

    fn label(&self) -> String {
        format!("{} {} ({})", self.kind(), self.name(), self.file)
    }
}

fn parse_documents(file: &str, text: &str) -> Vec<Doc> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"))
        })
        .filter(|value| !value.is_null())
        .map(|value| Doc {
            file: file.to_owned(),
            value,
        })
        .collect()
}

fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect();
    files.sort();
    files
}

fn documents_in(dir: &str) -> Vec<Doc> {
    yaml_files(dir)
        .iter()
        .flat_map(|name| {
            let path = root().join(dir).join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            parse_documents(&format!("{dir}/{name}"), &text)
        })
        .collect()
}

/// Every document of deploy/kubernetes/*.yaml.
fn manifests() -> Vec<Doc> {
    let docs = documents_in("deploy/kubernetes");
    assert!(
        docs.len() > 10,
        "deploy/kubernetes holds only {} documents",
        docs.len()
    );
    docs
}

/// The pod spec of a workload, if the document is one.
fn pod_spec(value: &Value) -> Option<&Value> {
    match value["kind"].as_str()? {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            Some(&value["spec"]["template"]["spec"])
        }
        "CronJob" => Some(&value["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        "Pod" => Some(&value["spec"]),
        _ => None,
    }
}

fn pod_labels(value: &Value) -> &Value {
    match value["kind"].as_str() {
        Some("CronJob") => &value["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
        _ => &value["spec"]["template"]["metadata"]["labels"],
    }
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn strings(value: &Value) -> Vec<String> {
    list(value)
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        })
        .collect()
}

/// Containers and init containers of a pod.
fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    list(&pod["initContainers"])
        .iter()
        .chain(list(&pod["containers"]))
}

/// Every workload's pod, with a label for messages.
fn workloads(docs: &[Doc]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter_map(|doc| pod_spec(&doc.value).map(|pod| (doc.label(), pod)))
        .collect()
}

fn report(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}",
        problems.join("\n  - ")
    );
}

// ---- commands ------------------------------------------------------------------------------

/// The subcommand words of `args` (everything before the first flag) and its flags with
/// their values (`--name value` or `--name=value`).
fn split_args(args: &[String]) -> (Vec<String>, Vec<(String, Option<String>)>) {
    let words: Vec<String> = args
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .cloned()
        .collect();
    let mut flags = Vec::new();
    let mut rest = args[words.len()..].iter().peekable();
    while let Some(arg) = rest.next() {
        if let Some((name, value)) = arg.split_once('=') {
            flags.push((name.to_owned(), Some(value.to_owned())));
        } else if arg.starts_with('-') {
            let value = rest.next_if(|next| !next.starts_with('-')).cloned();
            flags.push((arg.clone(), value));
        }
    }
    (words, flags)
}

/// Whether the help text lists `flag` as a whole word (`--roles` but not `--roles-x`).
fn mentions_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(at, _)| {
        let before = help[..at].chars().next_back();
        let after = help[at + flag.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '-')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

/// The image's repository name without registry, path, tag or digest.
fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// Problems with what a container runs: the examplebank image and entrypoint, and arguments
/// the binary accepts (it is run with them and `--help`).
fn command_problems(container: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let image = container["image"].as_str().unwrap_or("");
    if image_name(image) != "examplebank" {
        problems.push(format!("image {image:?} is not the examplebank image"));
    }
    if !container["command"].is_null() && strings(&container["command"]) != [ENTRYPOINT] {
        problems.push(format!(
            "command {} replaces the image's entrypoint {ENTRYPOINT}",
            container["command"]
        ));
    }
    let args = strings(&container["args"]);
    if args.is_empty() {
        problems.push("no args: name the subcommand (and roles) explicitly".to_owned());
        return problems;
    }
    let output = Command::new(BINARY)
        .args(&args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run the examplebank binary");
    let help = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        problems.push(format!(
            "`examplebank {} --help` fails: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
        return problems;
    }
    let (words, flags) = split_args(&args);
    if words.is_empty() {
        problems.push(format!("args {args:?} name no subcommand"));
    }
    for (flag, value) in &flags {
        if !mentions_flag(&help, flag) {
            problems.push(format!(
                "`examplebank {}` has no flag {flag}",
                words.join(" ")
            ));
        }
        if flag == "--roles" {
            let roles = value.as_deref().unwrap_or("");
            if let Err(err) = Roles::parse(roles) {
                problems.push(format!("--roles {roles}: {err}"));
            }
        }
    }
    problems
}

// ---- settings ------------------------------------------------------------------------------

/// Why an environment variable is not a setting, or `None` when it is one.
fn unknown_setting(name: &str, known: &BTreeSet<String>) -> Option<String> {
    let rest = name.strip_prefix("EXAMPLEBANK_")?;
    if name == "EXAMPLEBANK_CONFIG" {
        return None;
    }
    let key = rest.to_ascii_lowercase();
    if key.starts_with("test_") {
        return Some(format!(
            "{name}: EXAMPLEBANK_TEST_* belong to the test suite and the server ignores them"
        ));
    }
    if let Some(secret) = key
        .strip_suffix("_file")
        .filter(|k| SECRET_SETTINGS.contains(k))
    {
        return (!known.contains(secret)).then(|| {
            format!("{name}: {secret} is not a setting (examplebank::settings::all_keys)")
        });
    }
    if known.contains(&key) {
        return None;
    }
    Some(format!(
        "{name}: {key} is not a setting (examplebank::settings::all_keys); only {} may come from _FILE",
        SECRET_SETTINGS.join(", ")
    ))
}

fn known_settings() -> BTreeSet<String> {
    all_keys().into_iter().collect()
}

/// Problems with a container's environment: unknown settings, duplicates, and settings
/// hidden behind envFrom (which this test could not check).
fn env_problems(container: &Value, known: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for entry in list(&container["env"]) {
        let name = entry["name"].as_str().unwrap_or("");
        if !seen.insert(name.to_owned()) {
            problems.push(format!("{name} is set twice"));
        }
        problems.extend(unknown_setting(name, known));
    }
    if !container["envFrom"].is_null() {
        problems.push("envFrom hides which settings a role gets: list them in env".to_owned());
    }
    problems
}

/// Every `{name: EXAMPLEBANK_..., value | valueFrom}` inside `value`, including inside
/// kustomize patches (YAML held in strings).
fn env_entries_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map.get("name").and_then(Value::as_str) {
                if name.starts_with("EXAMPLEBANK_")
                    && (map.contains_key("value") || map.contains_key("valueFrom"))
                {
                    out.push(name.to_owned());
                }
            }
            for (key, inner) in map {
                if key == "patch" {
                    if let Some(text) = inner.as_str() {
                        for doc in parse_documents("patch", text) {
                            env_entries_in(&doc.value, out);
                        }
                    }
                }
                env_entries_in(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| env_entries_in(v, out)),
        _ => {}
    }
}

/// A value for a secret setting read from a file in the settings check.
fn placeholder_secret(setting: &str) -> &'static str {
    match setting {
        "database_url" => "postgres://examplebank@postgres.invalid/examplebank",
        _ => "placeholder-secret",
    }
}

/// The environment a container gets, with ConfigMap references resolved, secret files
/// replaced by temporary files holding placeholders, and Secret references by placeholders.
fn container_env(
    container: &Value,
    config_maps: &BTreeMap<String, Value>,
    files: &Path,
) -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    for entry in list(&container["env"]) {
        let name = entry["name"].as_str().unwrap_or("").to_owned();
        let value = if let Some(value) = entry["value"].as_str() {
            value.to_owned()
        } else if let Some(reference) = entry["valueFrom"]["configMapKeyRef"].as_object() {
            let map = reference["name"].as_str().unwrap_or("");
            let key = reference["key"].as_str().unwrap_or("");
            config_maps
                .get(map)
                .and_then(|data| data[key].as_str())
                .ok_or_else(|| format!("{name}: ConfigMap {map} has no key {key}"))?
                .to_owned()
        } else if !entry["valueFrom"].is_null() {
            "placeholder".to_owned()
        } else {
            String::new()
        };
        let secret = name
            .strip_prefix("EXAMPLEBANK_")
            .and_then(|n| n.strip_suffix("_FILE"))
            .map(str::to_ascii_lowercase)
            .filter(|k| SECRET_SETTINGS.contains(&k.as_str()));
        match secret {
            Some(setting) => {
                let path = files.join(&setting);
                std::fs::write(&path, placeholder_secret(&setting)).unwrap();
                env.push((name, path.display().to_string()));
            }
            None => env.push((name, value)),
        }
    }
    Ok(env)
}

/// Loads a container's settings with the real loader, as its process would at start.
fn settings_problem(container: &Value, config_maps: &BTreeMap<String, Value>) -> Option<String> {
    let files = tempfile::tempdir().unwrap();
    let env = match container_env(container, config_maps, files.path()) {
        Ok(env) => env,
        Err(problem) => return Some(problem),
    };
    let (_, flags) = split_args(&strings(&container["args"]));
    let mut overrides = Overrides::default();
    for (flag, value) in flags {
        match flag.as_str() {
            "--roles" => overrides.roles = value,
            "--addr" => overrides.addr = value,
            "--data-dir" => overrides.data_dir = value.map(PathBuf::from),
            _ => {}
        }
    }
    Settings::load_from(None, &env, &overrides)
        .err()
        .map(|err| {
            let err = format!("{err:#}");
            // The loader's message for an unknown name goes on to list every setting.
            let err = err.split("; known settings").next().unwrap_or_default();
            format!("the settings do not load: {err}")
        })
}

fn config_maps(docs: &[Doc]) -> BTreeMap<String, Value> {
    docs.iter()
        .filter(|d| d.kind() == "ConfigMap")
        .map(|d| (d.name().to_owned(), d.value["data"].clone()))
        .collect()
}

/// The names a kustomize patch target matches: `name` or `^(a|b|c)$`.
fn target_names(pattern: &str) -> Vec<String> {
    pattern
        .trim_start_matches('^')
        .trim_end_matches('$')
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split('|')
        .map(str::to_owned)
        .collect()
}

/// deploy/kubernetes with the external-provider overlay's patches applied, as far as the
/// settings are concerned: strategic-merge deletions, and JSON-patch additions to a
/// container's env (other operations leave workloads alone).
fn overlaid_manifests() -> Vec<Doc> {
    let mut docs = manifests();
    let overlay = documents_in(OVERLAY_DIR);
    let kustomization = overlay
        .iter()
        .find(|d| d.kind() == "Kustomization")
        .expect("the overlay's kustomization.yaml");
    for entry in list(&kustomization.value["patches"]) {
        let text = entry["patch"].as_str().expect("inline patches");
        if entry["target"].is_null() {
            for patch in parse_documents("patch", text) {
                if patch.value["$patch"] == json!("delete") {
                    docs.retain(|d| !(d.kind() == patch.kind() && d.name() == patch.name()));
                }
            }
            continue;
        }
        let kind = entry["target"]["kind"].as_str().unwrap_or("");
        let names = target_names(entry["target"]["name"].as_str().unwrap_or(""));
        let operations = parse_documents("patch", text);
        for doc in docs
            .iter_mut()
            .filter(|d| d.kind() == kind && names.iter().any(|n| n == d.name()))
        {
            for op in operations.iter().flat_map(|o| list(&o.value)) {
                let path = op["path"].as_str().unwrap_or("");
                let Some(container) = path.strip_suffix("/env/-") else {
                    continue;
                };
                assert_eq!(op["op"], json!("add"), "{path}");
                let label = doc.label();
                let env = doc
                    .value
                    .pointer_mut(container)
                    .unwrap_or_else(|| panic!("{path} is not in {label}"))
                    .as_object_mut()
                    .unwrap()
                    .entry("env")
                    .or_insert_with(|| json!([]));
                env.as_array_mut().unwrap().push(op["value"].clone());
            }
        }
    }
    docs
}

// ---- files and volumes ---------------------------------------------------------------------

/// The volume mount that holds `path` (the longest matching mount path).
fn mount_of<'a>(container: &'a Value, path: &str) -> Option<&'a Value> {
    list(&container["volumeMounts"])
        .iter()
        .filter(|m| {
            let mount = m["mountPath"].as_str().unwrap_or("").trim_end_matches('/');
            path == mount || path.starts_with(&format!("{mount}/"))
        })
        .max_by_key(|m| m["mountPath"].as_str().unwrap_or("").len())
}

/// The file names a Secret or projected volume provides, when it lists them.
fn volume_files(volume: &Value) -> Option<Vec<String>> {
    let mut sources: Vec<&Value> = Vec::new();
    if !volume["secret"].is_null() {
        sources.push(&volume["secret"]);
    }
    if !volume["configMap"].is_null() {
        sources.push(&volume["configMap"]);
    }
    for source in list(&volume["projected"]["sources"]) {
        for kind in ["secret", "configMap"] {
            if !source[kind].is_null() {
                sources.push(&source[kind]);
            }
        }
    }
    if sources.is_empty() {
        return None;
    }
    let mut files = Vec::new();
    for source in sources {
        let items = list(&source["items"]);
        if items.is_empty() {
            return None; // every key of the Secret: the names are not in the manifests
        }
        files.extend(
            items
                .iter()
                .map(|i| i["path"].as_str().unwrap_or("").to_owned()),
        );
    }
    Some(files)
}

/// Problems with the paths a container's settings name: each must lie in a mounted volume,
/// and a secret file must be one its Secret volume provides.
fn path_problems(container: &Value, pod: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for entry in list(&container["env"]) {
        let name = entry["name"].as_str().unwrap_or("");
        let Some(path) = entry["value"].as_str() else {
            continue;
        };
        let is_file_setting = name.starts_with("EXAMPLEBANK_") && name.ends_with("_FILE");
        if !(is_file_setting || PATH_SETTINGS.contains(&name)) {
            continue;
        }
        let Some(mount) = mount_of(container, path) else {
            problems.push(format!(
                "{name}={path} is on the read-only root file system, in no volume"
            ));
            continue;
        };
        let volume_name = mount["name"].as_str().unwrap_or("");
        let Some(volume) = list(&pod["volumes"])
            .iter()
            .find(|v| v["name"].as_str() == Some(volume_name))
        else {
            problems.push(format!("volume {volume_name} is mounted but not defined"));
            continue;
        };
        if is_file_setting {
            let mount_path = mount["mountPath"]
                .as_str()
                .unwrap_or("")
                .trim_end_matches('/');
            let relative = path[mount_path.len()..].trim_start_matches('/');
            if let Some(files) = volume_files(volume) {
                if !files.iter().any(|f| f == relative) {
                    problems.push(format!(
                        "{name}={path}: volume {volume_name} provides {files:?}, not {relative}"
                    ));
                }
            }
        }
    }
    for mount in list(&container["volumeMounts"]) {
        let name = mount["name"].as_str().unwrap_or("");
        if !list(&pod["volumes"])
            .iter()
            .any(|v| v["name"].as_str() == Some(name))
        {
            problems.push(format!("volume {name} is mounted but not defined"));
        }
    }
    problems
}

// ---- pod security --------------------------------------------------------------------------

/// Problems with a pod against the restricted Pod Security Standard and this project's
/// rules (non-root numeric user, read-only root file system, no service-account token).
fn security_problems(pod: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let pod_context = &pod["securityContext"];
    for flag in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[flag] == json!(true) {
            problems.push(format!("{flag} is on"));
        }
    }
    if pod["automountServiceAccountToken"] != json!(false) {
        problems.push(
            "automountServiceAccountToken is not false (examplebank never calls the API server)"
                .to_owned(),
        );
    }
    let mut count = 0;
    for container in containers(pod) {
        count += 1;
        let name = container["name"].as_str().unwrap_or("?");
        let context = &container["securityContext"];
        let effective = |key: &str| -> Value {
            if context[key].is_null() {
                pod_context[key].clone()
            } else {
                context[key].clone()
            }
        };
        if effective("runAsNonRoot") != json!(true) {
            problems.push(format!("{name}: runAsNonRoot is not true"));
        }
        match effective("runAsUser").as_i64() {
            Some(uid) if uid > 0 => {}
            _ => problems.push(format!("{name}: runAsUser is not a non-root numeric id")),
        }
        if effective("seccompProfile")["type"] != json!("RuntimeDefault") {
            problems.push(format!("{name}: seccompProfile is not RuntimeDefault"));
        }
        if context["allowPrivilegeEscalation"] != json!(false) {
            problems.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        if context["readOnlyRootFilesystem"] != json!(true) {
            problems.push(format!("{name}: readOnlyRootFilesystem is not true"));
        }
        if context["privileged"] == json!(true) {
            problems.push(format!("{name}: privileged"));
        }
        if !strings(&context["capabilities"]["drop"]).contains(&"ALL".to_owned()) {
            problems.push(format!("{name}: capabilities do not drop ALL"));
        }
        if !list(&context["capabilities"]["add"]).is_empty() {
            problems.push(format!("{name}: capabilities are added"));
        }
    }
    if count == 0 {
        problems.push("no containers".to_owned());
    }
    problems
}

// ---- the tests on the manifests ------------------------------------------------------------

#[test]
fn every_container_runs_a_real_examplebank_command() {
    let docs = manifests();
    let mut problems = Vec::new();
    for (label, pod) in workloads(&docs) {
        for container in containers(pod) {
            for problem in command_problems(container) {
                problems.push(format!("{label}: {problem}"));
            }
        }
    }
    report(
        "containers that do not run a real examplebank command",
        &problems,
    );
}

#[test]
fn every_setting_in_the_manifests_is_a_known_setting() {
    let docs = manifests();
    let known = known_settings();
    let mut problems = Vec::new();
    for (label, pod) in workloads(&docs) {
        for container in containers(pod) {
            for problem in env_problems(container, &known) {
                problems.push(format!("{label}: {problem}"));
            }
        }
    }
    // The external-provider overlay adds settings through patches; they must exist too.
    for doc in documents_in(OVERLAY_DIR) {
        let mut names = Vec::new();
        env_entries_in(&doc.value, &mut names);
        for name in names {
            problems.extend(
                unknown_setting(&name, &known).map(|problem| format!("{}: {problem}", doc.file)),
            );
        }
    }
    report("unknown settings", &problems);
}

#[test]
fn every_container_s_settings_load() {
    let docs = manifests();
    let config_maps = config_maps(&docs);
    let mut problems = Vec::new();
    for (label, pod) in workloads(&docs) {
        for container in containers(pod) {
            if let Some(problem) = settings_problem(container, &config_maps) {
                problems.push(format!("{label}: {problem}"));
            }
        }
    }
    report("settings the loader refuses", &problems);
}

#[test]
fn with_the_external_provider_overlay_every_container_s_settings_load() {
    let docs = overlaid_manifests();
    assert!(
        deployment_of(&docs, "identity").is_none(),
        "the overlay removes the identity role, which cannot run beside oidc_issuer"
    );
    let config_maps = config_maps(&docs);
    let mut problems = Vec::new();
    let mut providers = 0;
    for (label, pod) in workloads(&docs) {
        for container in containers(pod) {
            let env = list(&container["env"]);
            if env
                .iter()
                .any(|e| e["name"] == json!("EXAMPLEBANK_OIDC_ISSUER"))
            {
                providers += 1;
            }
            if let Some(problem) = settings_problem(container, &config_maps) {
                problems.push(format!("{label} with {OVERLAY_DIR}: {problem}"));
            }
        }
    }
    assert!(
        providers >= 6,
        "the overlay reaches the roles and the erasure CronJob"
    );
    report("settings the loader refuses with the overlay", &problems);
}

#[test]
fn files_and_directories_the_settings_name_are_mounted() {
    let docs = manifests();
    let mut problems = Vec::new();
    for (label, pod) in workloads(&docs) {
        for container in containers(pod) {
            for problem in path_problems(container, pod) {
                problems.push(format!("{label}: {problem}"));
            }
        }
    }
    report("paths outside the mounted volumes", &problems);
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard() {
    let docs = manifests();
    let pods = workloads(&docs);
    assert!(pods.len() >= 9, "only {} workloads", pods.len());
    let mut problems = Vec::new();
    for (label, pod) in pods {
        for problem in security_problems(pod) {
            problems.push(format!("{label}: {problem}"));
        }
    }
    report("pods that are not restricted", &problems);
}

/// The Deployment whose container runs `serve --roles <role>`.
fn deployment_of<'a>(docs: &'a [Doc], role: &str) -> Option<&'a Doc> {
    docs.iter().filter(|d| d.kind() == "Deployment").find(|d| {
        pod_spec(&d.value).is_some_and(|pod| {
            containers(pod).any(|c| strings(&c["args"]) == ["serve", "--roles", role])
        })
    })
}

fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
}

#[test]
fn every_role_has_a_deployment_and_a_service_on_port_80() {
    let docs = manifests();
    let mut problems = Vec::new();
    for role in ROLE_NAMES {
        let Some(deployment) = deployment_of(&docs, role) else {
            problems.push(format!("no Deployment runs `serve --roles {role}`"));
            continue;
        };
        let labels = pod_labels(&deployment.value);
        if !selects(&deployment.value["spec"]["selector"]["matchLabels"], labels) {
            problems.push(format!(
                "{}: its selector misses its pods",
                deployment.label()
            ));
        }
        let pod = pod_spec(&deployment.value).unwrap();
        let port_names: Vec<&Value> = containers(pod)
            .flat_map(|c| list(&c["ports"]))
            .filter(|p| p["containerPort"] == json!(8080))
            .collect();
        if port_names.is_empty() {
            problems.push(format!("{}: no container port 8080", deployment.label()));
        }
        for probe in ["livenessProbe", "readinessProbe"] {
            let path = containers(pod)
                .map(|c| c[probe]["httpGet"]["path"].clone())
                .next()
                .unwrap_or(Value::Null);
            let expected = if probe == "livenessProbe" {
                "/healthz"
            } else {
                "/readyz"
            };
            if path != json!(expected) {
                problems.push(format!(
                    "{}: {probe} is not GET {expected}",
                    deployment.label()
                ));
            }
        }
        let service = docs
            .iter()
            .filter(|d| d.kind() == "Service")
            .find(|d| selects(&d.value["spec"]["selector"], labels));
        let Some(service) = service else {
            problems.push(format!("no Service selects the {role} pods"));
            continue;
        };
        let reaches_8080 = list(&service.value["spec"]["ports"]).iter().any(|p| {
            p["port"] == json!(80)
                && (p["targetPort"] == json!(8080)
                    || port_names.iter().any(|c| c["name"] == p["targetPort"]))
        });
        if !reaches_8080 {
            problems.push(format!("{}: no port 80 to the pods' 8080", service.label()));
        }
    }
    report("roles not deployed", &problems);
}

#[test]
fn transactions_autoscale_migrations_run_in_a_job_and_erasure_in_a_cron_job() {
    let docs = manifests();
    let transactions = deployment_of(&docs, "transactions").expect("transactions Deployment");
    let hpa = docs
        .iter()
        .find(|d| {
            d.kind() == "HorizontalPodAutoscaler"
                && d.value["spec"]["scaleTargetRef"]["kind"] == json!("Deployment")
                && d.value["spec"]["scaleTargetRef"]["name"] == json!(transactions.name())
        })
        .expect("a HorizontalPodAutoscaler targets the transactions Deployment");
    assert_eq!(hpa.value["apiVersion"], json!("autoscaling/v2"));
    assert!(
        list(&hpa.value["spec"]["metrics"])
            .iter()
            .any(|m| m["resource"]["name"] == json!("cpu")),
        "the autoscaler scales on CPU"
    );
    let runs = |kind: &str, args: &[&str]| {
        docs.iter().filter(|d| d.kind() == kind).find(|d| {
            pod_spec(&d.value)
                .is_some_and(|pod| containers(pod).any(|c| strings(&c["args"]) == args))
        })
    };
    runs("Job", &["migrate"]).expect("a Job runs `examplebank migrate`");
    let cron =
        runs("CronJob", &["erasure", "run"]).expect("a CronJob runs `examplebank erasure run`");
    assert_eq!(
        cron.value["spec"]["concurrencyPolicy"],
        json!("Forbid"),
        "erasure runs never overlap each other"
    );
    for role in ["transactions", "rewards"] {
        let deployment = deployment_of(&docs, role).unwrap();
        let replicas = deployment.value["spec"]["replicas"].as_i64();
        let scaled =
            replicas.is_some_and(|n| n >= 2) || (replicas.is_none() && role == "transactions");
        assert!(scaled, "{role} runs at least two replicas");
    }
}

#[test]
fn the_namespace_is_restricted_and_the_network_denies_by_default() {
    let docs = manifests();
    let namespace = docs
        .iter()
        .find(|d| d.kind() == "Namespace" && d.name() == NAMESPACE)
        .expect("the examplebank Namespace");
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            namespace.value["metadata"]["labels"][format!("pod-security.kubernetes.io/{mode}")],
            json!("restricted"),
            "the namespace's Pod Security {mode} level"
        );
    }
    let deny = docs.iter().find(|d| {
        let spec = &d.value["spec"];
        d.kind() == "NetworkPolicy"
            && spec["podSelector"]
                .as_object()
                .is_some_and(|s| s.is_empty())
            && strings(&spec["policyTypes"]).contains(&"Ingress".to_owned())
            && strings(&spec["policyTypes"]).contains(&"Egress".to_owned())
            && list(&spec["ingress"]).is_empty()
            && list(&spec["egress"]).is_empty()
    });
    assert!(
        deny.is_some(),
        "a NetworkPolicy denies all ingress and egress by default"
    );
    let mut elsewhere = Vec::new();
    for doc in &docs {
        let kind = doc.kind();
        if kind.is_empty() || kind == "Namespace" || kind == "Kustomization" {
            continue;
        }
        if doc.value["metadata"]["namespace"] != json!(NAMESPACE) {
            elsewhere.push(doc.label());
        }
    }
    report("objects outside the examplebank namespace", &elsewhere);
}

/// A concrete path for a route pattern: `{id}` and the like become `x`.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|part| if part.starts_with('{') { "x" } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn the_ingress_routes_every_public_path_and_no_internal_one() {
    let docs = manifests();
    let services: BTreeSet<&str> = docs
        .iter()
        .filter(|d| d.kind() == "Service")
        .map(Doc::name)
        .collect();
    let mut paths = Vec::new();
    for ingress in docs.iter().filter(|d| d.kind() == "Ingress") {
        for rule in list(&ingress.value["spec"]["rules"]) {
            for path in list(&rule["http"]["paths"]) {
                paths.push((
                    path["path"].as_str().unwrap_or("").to_owned(),
                    path["pathType"].as_str().unwrap_or("").to_owned(),
                    path["backend"]["service"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                ));
            }
        }
    }
    assert!(!paths.is_empty(), "an Ingress with paths");
    let routed = |p: &str| {
        paths.iter().any(|(prefix, kind, _)| match kind.as_str() {
            "Exact" => prefix == p,
            _ => p == prefix || p.starts_with(&format!("{}/", prefix.trim_end_matches('/'))),
        })
    };
    let mut problems = Vec::new();
    for (prefix, _, backend) in &paths {
        if !services.contains(backend.as_str()) {
            problems.push(format!("{prefix} goes to {backend:?}, which is no Service"));
        }
    }
    let hidden =
        |p: &str| p.starts_with("/internal/") || ["/metrics", "/healthz", "/readyz"].contains(&p);
    for route in ROUTES {
        let path = concrete(route.path);
        match (hidden(route.path), routed(&path)) {
            (true, true) => problems.push(format!("{} is reachable from outside", route.path)),
            (false, false) => {
                problems.push(format!("{} {} is not routed", route.method, route.path))
            }
            _ => {}
        }
    }
    assert!(
        ROUTES.iter().any(|r| r.path.starts_with("/internal/")),
        "the route table has internal routes to keep out"
    );
    report("ingress paths", &problems);
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let files: BTreeSet<String> = yaml_files("deploy/kubernetes")
        .into_iter()
        .filter(|f| f != "kustomization.yaml")
        .collect();
    let docs = documents_in("deploy/kubernetes");
    let kustomization = docs
        .iter()
        .find(|d| d.kind() == "Kustomization")
        .expect("deploy/kubernetes/kustomization.yaml");
    let listed: BTreeSet<String> = strings(&kustomization.value["resources"])
        .into_iter()
        .collect();
    assert_eq!(
        listed, files,
        "kustomization.yaml resources vs the files beside it"
    );
}

// ---- the Dockerfile ------------------------------------------------------------------------

/// Problems with a Dockerfile: stages, the user it runs as, the build, the entrypoint.
fn dockerfile_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let instructions: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (word, rest) = l.split_once(char::is_whitespace)?;
            Some((word.to_ascii_uppercase(), rest.trim().to_owned()))
        })
        .collect();
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|(w, _)| w == "FROM")
        .map(|(_, r)| r)
        .collect();
    if froms.len() < 2 {
        problems.push("not multi-stage: fewer than two FROM lines".to_owned());
    }
    let last_from = instructions
        .iter()
        .rposition(|(w, _)| w == "FROM")
        .unwrap_or(0);
    let final_stage = &instructions[last_from..];
    let users: Vec<&String> = final_stage
        .iter()
        .filter(|(w, _)| w == "USER")
        .map(|(_, r)| r)
        .collect();
    match users.last() {
        None => problems.push("the final stage has no USER line".to_owned()),
        Some(user) => {
            let uid = user.split(':').next().unwrap_or("");
            if !uid.parse::<u32>().is_ok_and(|id| id > 0) {
                problems.push(format!("USER {user} is not a non-root numeric id"));
            }
        }
    }
    if !text.contains("cargo build --release --locked -p examplebank") {
        problems.push("no `cargo build --release --locked -p examplebank`".to_owned());
    }
    let entrypoint = final_stage
        .iter()
        .rev()
        .find(|(w, _)| w == "ENTRYPOINT")
        .map(|(_, r)| r.as_str());
    if entrypoint != Some(&format!("[\"{ENTRYPOINT}\"]")) {
        problems.push(format!(
            "ENTRYPOINT is not [\"{ENTRYPOINT}\"]: {entrypoint:?}"
        ));
    }
    if !final_stage
        .iter()
        .any(|(w, r)| w == "EXPOSE" && r == "8080")
    {
        problems.push("no EXPOSE 8080".to_owned());
    }
    problems
}

#[test]
fn the_dockerfile_is_multi_stage_and_runs_as_a_numeric_non_root_user() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    report("Dockerfile", &dockerfile_problems(&text));
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignore
            .lines()
            .any(|l| l.trim() == "*" || l.trim().trim_end_matches('/') == "target"),
        ".dockerignore keeps target/ out of the build context"
    );
}

// ---- network policies --------------------------------------------------------------------

/// A pod as network policies see it: its namespace and its labels.
struct Peer {
    name: String,
    namespace: String,
    labels: Value,
}

impl Peer {
    /// A pod in another namespace (the ingress controller, Prometheus, PostgreSQL, DNS).
    fn outside(namespace: &str, labels: Value) -> Self {
        Self {
            name: format!("a pod in namespace {namespace}"),
            namespace: namespace.to_owned(),
            labels,
        }
    }

    /// An address outside the cluster (no namespace, no labels).
    fn internet() -> Self {
        Self {
            name: "an address outside the cluster".to_owned(),
            namespace: String::new(),
            labels: json!({}),
        }
    }
}

/// Kubernetes' label selector: `matchLabels` and `matchExpressions`; `{}` selects everything.
fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let by_label = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| labels[k] == *v));
    let by_expression = list(&selector["matchExpressions"]).iter().all(|e| {
        let value = labels[e["key"].as_str().unwrap_or("")].as_str();
        let listed = value.is_some_and(|v| strings(&e["values"]).iter().any(|x| x == v));
        match e["operator"].as_str() {
            Some("In") => listed,
            Some("NotIn") => !listed,
            Some("Exists") => value.is_some(),
            Some("DoesNotExist") => value.is_none(),
            _ => false,
        }
    });
    by_label && by_expression
}

/// One `from`/`to` entry of a rule in a policy of `NAMESPACE`.
///
/// An `ipBlock` is taken to match every address outside the cluster (`Peer::internet`), the
/// cautious reading: the check cannot know which addresses a range covers.
fn peer_matches(entry: &Value, peer: &Peer) -> bool {
    if !entry["ipBlock"].is_null() {
        return peer.namespace.is_empty();
    }
    if peer.namespace.is_empty() {
        return false;
    }
    let namespace = json!({ "kubernetes.io/metadata.name": peer.namespace });
    let in_namespace = match &entry["namespaceSelector"] {
        Value::Null => peer.namespace == NAMESPACE,
        selector => selector_matches(selector, &namespace),
    };
    let pod = match &entry["podSelector"] {
        Value::Null => true,
        selector => selector_matches(selector, &peer.labels),
    };
    in_namespace && pod
}

fn policy_types(policy: &Value) -> Vec<String> {
    let given = strings(&policy["spec"]["policyTypes"]);
    if !given.is_empty() {
        return given;
    }
    let mut types = vec!["Ingress".to_owned()];
    if !list(&policy["spec"]["egress"]).is_empty() {
        types.push("Egress".to_owned());
    }
    types
}

/// Whether the policies let `from` open a connection to `to` on `port`/`protocol`: egress at
/// `from` and ingress at `to`, each allowed when no policy selects the pod for that direction,
/// or when a rule of one that does matches the other side and the port. Pods outside the
/// namespace are not governed by these policies.
fn connection_allowed(
    policies: &[&Value],
    from: &Peer,
    to: &Peer,
    port: u16,
    protocol: &str,
) -> bool {
    let direction = |kind: &str, subject: &Peer, other: &Peer| {
        if subject.namespace != NAMESPACE {
            return true;
        }
        let (rules, peers) = if kind == "Ingress" {
            ("ingress", "from")
        } else {
            ("egress", "to")
        };
        let selecting: Vec<&&Value> = policies
            .iter()
            .filter(|p| {
                p["metadata"]["namespace"] == json!(NAMESPACE)
                    && policy_types(p).iter().any(|t| t == kind)
                    && selector_matches(&p["spec"]["podSelector"], &subject.labels)
            })
            .collect();
        selecting.is_empty()
            || selecting.iter().any(|p| {
                list(&p["spec"][rules]).iter().any(|rule| {
                    let ports = list(&rule["ports"]);
                    let port_ok = ports.is_empty()
                        || ports.iter().any(|p| {
                            p["port"] == json!(port)
                                && p["protocol"].as_str().unwrap_or("TCP") == protocol
                        });
                    let entries = list(&rule[peers]);
                    port_ok
                        && (entries.is_empty() || entries.iter().any(|e| peer_matches(e, other)))
                })
            })
    };
    direction("Egress", from, to) && direction("Ingress", to, from)
}

/// Checks the policies against what the pods do: every call between roles that a pod's
/// `*_URL` settings make is allowed and no other one; the ingress controller reaches exactly
/// the pods behind the Ingress; Prometheus reaches every Deployment's pods; every pod reaches
/// DNS and PostgreSQL and nothing else outside.
fn network_problems(docs: &[Doc]) -> Vec<String> {
    let policies: Vec<&Value> = docs
        .iter()
        .filter(|d| d.kind() == "NetworkPolicy")
        .map(|d| &d.value)
        .collect();
    let workloads: Vec<(&Doc, &Value)> = docs
        .iter()
        .filter_map(|d| pod_spec(&d.value).map(|pod| (d, pod)))
        .collect();
    let pods: Vec<Peer> = workloads
        .iter()
        .map(|(doc, _)| Peer {
            name: doc.label(),
            namespace: NAMESPACE.to_owned(),
            labels: pod_labels(&doc.value).clone(),
        })
        .collect();
    let services: BTreeMap<&str, &Value> = docs
        .iter()
        .filter(|d| d.kind() == "Service")
        .map(|d| (d.name(), &d.value["spec"]["selector"]))
        .collect();
    let behind = |service: &str| -> Vec<usize> {
        services.get(service).map_or_else(Vec::new, |selector| {
            (0..pods.len())
                .filter(|&j| selects(selector, &pods[j].labels))
                .collect()
        })
    };
    let mut problems = Vec::new();

    let mut calls = BTreeSet::new();
    for (i, (_, pod)) in workloads.iter().enumerate() {
        for env in containers(pod).flat_map(|c| list(&c["env"])) {
            let name = env["name"].as_str().unwrap_or("");
            if !["IDENTITY", "USERS", "TRANSACTIONS"]
                .iter()
                .any(|role| name == format!("EXAMPLEBANK_{role}_URL"))
            {
                continue;
            }
            let value = env["value"].as_str().unwrap_or("");
            let host = value
                .strip_prefix("http://")
                .unwrap_or(value)
                .split(['/', ':', '.'])
                .next()
                .unwrap_or("");
            let callees = behind(host);
            if callees.is_empty() {
                problems.push(format!("{}: {name} = {value} reaches no pod", pods[i].name));
            }
            calls.extend(callees.into_iter().map(|j| (i, j)));
        }
    }
    for (i, from) in pods.iter().enumerate() {
        for (j, to) in pods.iter().enumerate() {
            if i == j {
                continue;
            }
            match (
                calls.contains(&(i, j)),
                connection_allowed(&policies, from, to, 8080, "TCP"),
            ) {
                (true, false) => problems.push(format!(
                    "{} calls {} but the policies refuse it",
                    from.name, to.name
                )),
                (false, true) => problems.push(format!(
                    "{} may reach {} though it never calls it",
                    from.name, to.name
                )),
                _ => {}
            }
        }
    }

    let public: BTreeSet<usize> = docs
        .iter()
        .filter(|d| d.kind() == "Ingress")
        .flat_map(|d| list(&d.value["spec"]["rules"]))
        .flat_map(|rule| list(&rule["http"]["paths"]))
        .flat_map(|path| behind(path["backend"]["service"]["name"].as_str().unwrap_or("")))
        .collect();
    let controller = Peer::outside("ingress-controller", json!({}));
    let prometheus = Peer::outside("monitoring", json!({}));
    let dns = Peer::outside("kube-system", json!({ "k8s-app": "kube-dns" }));
    let postgres = Peer::outside("postgres", json!({}));
    let elsewhere = Peer::outside("default", json!({}));
    let internet = Peer::internet();
    for (j, (doc, _)) in workloads.iter().enumerate() {
        let pod = &pods[j];
        let from_controller = connection_allowed(&policies, &controller, pod, 8080, "TCP");
        if from_controller != public.contains(&j) {
            problems.push(format!(
                "{}: the ingress controller {} reach it, but the Ingress {} it",
                pod.name,
                if from_controller { "may" } else { "cannot" },
                if public.contains(&j) {
                    "routes to"
                } else {
                    "does not route to"
                }
            ));
        }
        if doc.kind() == "Deployment"
            && !connection_allowed(&policies, &prometheus, pod, 8080, "TCP")
        {
            problems.push(format!("{}: Prometheus cannot scrape it", pod.name));
        }
        for (what, target, port, protocol) in [
            ("DNS", &dns, 53, "UDP"),
            ("PostgreSQL", &postgres, 5432, "TCP"),
        ] {
            if !connection_allowed(&policies, pod, target, port, protocol) {
                problems.push(format!("{}: cannot reach {what}", pod.name));
            }
        }
        for other in [&elsewhere, &internet] {
            let out = [
                (443, "TCP"),
                (8080, "TCP"),
                (5432, "TCP"),
                (53, "UDP"),
                (53, "TCP"),
            ]
            .into_iter()
            .any(|(port, protocol)| connection_allowed(&policies, pod, other, port, protocol));
            let into = [8080, 443]
                .into_iter()
                .any(|port| connection_allowed(&policies, other, pod, port, "TCP"));
            if out || into {
                problems.push(format!("{}: open to or from {}", pod.name, other.name));
            }
        }
    }
    problems
}

#[test]
fn network_policies_allow_exactly_the_calls_the_roles_make() {
    let docs = manifests();
    report("network policies", &network_problems(&docs));
}

// ---- the checkers catch what they are for --------------------------------------------------

fn container(args: &[&str], env: &[(&str, &str)]) -> Value {
    json!({
        "name": "examplebank",
        "image": "registry.example.org/team/examplebank:1.0",
        "args": args,
        "env": env.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
    })
}

#[test]
fn the_command_check_catches_wrong_flags_subcommands_and_images() {
    assert!(command_problems(&container(&["serve", "--roles", "users"], &[])).is_empty());
    assert!(command_problems(&container(&["erasure", "run"], &[])).is_empty());
    let cases: &[(&[&str], &str)] = &[
        (&["serve", "--rolez", "users"], "--rolez"),
        (&["serve", "--roles", "users,payments"], "payments"),
        (&["erasure", "start"], "fails"),
        (&["migrate", "--force"], "fails"),
        (&["--config", "/etc/examplebank.toml"], "no subcommand"),
        (&[], "no args"),
    ];
    for (args, expected) in cases {
        let problems = command_problems(&container(args, &[]));
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{args:?}: expected a problem mentioning {expected:?}, got {problems:?}"
        );
    }
    let mut other = container(&["migrate"], &[]);
    other["image"] = json!("docker.io/library/postgres:17");
    assert!(!command_problems(&other).is_empty(), "another image");
    let mut shell = container(&["migrate"], &[]);
    shell["command"] = json!(["/bin/sh", "-c"]);
    assert!(
        !command_problems(&shell).is_empty(),
        "a replaced entrypoint"
    );
    assert_eq!(image_name("ghcr.io/a/examplebank@sha256:00"), "examplebank");
    assert_eq!(image_name("localhost:5000/examplebank:1"), "examplebank");
    assert!(mentions_flag("  --roles <ROLES>", "--roles"));
    assert!(!mentions_flag("  --roles-x <R>", "--roles"));
}

#[test]
fn the_setting_check_catches_unknown_names() {
    let known = known_settings();
    let good = container(
        &["serve"],
        &[
            ("EXAMPLEBANK_ADDR", "0.0.0.0:8080"),
            ("EXAMPLEBANK_MASTER_KEY_FILE", "/s/master-key"),
            ("EXAMPLEBANK_DATABASE_URL_FILE", "/s/database-url"),
            ("EXAMPLEBANK_REWARDS_CLIENT_SECRET_FILE", "/s/rewards"),
            ("EXAMPLEBANK_CONFIG", "/etc/examplebank.toml"),
            ("RUST_BACKTRACE", "1"),
        ],
    );
    assert_eq!(env_problems(&good, &known), Vec::<String>::new());
    for bad in [
        "EXAMPLEBANK_NOT_A_SETTING",
        "EXAMPLEBANK_KEYS_DIR_FILE",
        "EXAMPLEBANK_ADRR",
        "EXAMPLEBANK_TEST_POSTGRES_URL",
    ] {
        let problems = env_problems(&container(&["serve"], &[(bad, "x")]), &known);
        assert!(
            problems.iter().any(|p| p.contains(bad)),
            "{bad} is caught: {problems:?}"
        );
    }
    let twice = container(
        &["serve"],
        &[("EXAMPLEBANK_ADDR", "a"), ("EXAMPLEBANK_ADDR", "b")],
    );
    assert!(
        !env_problems(&twice, &known).is_empty(),
        "a setting set twice"
    );
    let mut hidden = container(&["serve"], &[]);
    hidden["envFrom"] = json!([{"configMapRef": {"name": "everything"}}]);
    assert!(!env_problems(&hidden, &known).is_empty(), "envFrom");
    // Patches in a kustomization are searched too.
    let overlay = parse_documents(
        "overlay",
        "patches:\n  - patch: |-\n      - op: add\n        path: /x\n        value:\n          name: EXAMPLEBANK_NOPE\n          value: \"1\"\n",
    );
    let mut names = Vec::new();
    env_entries_in(&overlay[0].value, &mut names);
    assert_eq!(names, ["EXAMPLEBANK_NOPE"]);
}

#[test]
fn the_settings_load_check_catches_bad_values() {
    let maps = BTreeMap::from([(
        "settings".to_owned(),
        json!({"public-base-url": "https://bank.example.org"}),
    )]);
    let mut good = container(
        &["serve", "--roles", "users"],
        &[
            ("EXAMPLEBANK_ADDR", "0.0.0.0:8080"),
            ("EXAMPLEBANK_DATABASE_URL_FILE", "/s/database-url"),
        ],
    );
    good["env"].as_array_mut().unwrap().push(json!({
        "name": "EXAMPLEBANK_PUBLIC_BASE_URL",
        "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "public-base-url"}}
    }));
    assert_eq!(settings_problem(&good, &maps), None);
    for (name, value) in [
        ("EXAMPLEBANK_ADDR", "localhost"),
        ("EXAMPLEBANK_MIGRATE_ON_START", "nope"),
        ("EXAMPLEBANK_NOT_A_SETTING", "1"),
    ] {
        let bad = container(
            &["serve", "--roles", "users"],
            &[(name, value), ("EXAMPLEBANK_DATABASE_URL_FILE", "/s/db")],
        );
        assert!(settings_problem(&bad, &maps).is_some(), "{name}={value}");
    }
    // A split role without a database is refused, as the binary refuses it.
    let no_database = container(&["serve", "--roles", "users"], &[]);
    assert!(settings_problem(&no_database, &maps).is_some());
    let mut missing_key = container(&["serve"], &[]);
    missing_key["env"] = json!([{
        "name": "EXAMPLEBANK_PUBLIC_BASE_URL",
        "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope"}}
    }]);
    assert!(settings_problem(&missing_key, &maps).is_some());
}

#[test]
fn the_path_check_catches_unmounted_paths_and_missing_secret_files() {
    let pod = json!({
        "volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "secrets", "projected": {"sources": [
                {"secret": {"name": "db", "items": [{"key": "users", "path": "database-url"}]}}
            ]}}
        ]
    });
    let mut good = container(
        &["serve"],
        &[
            ("EXAMPLEBANK_KEYS_DIR", "/var/lib/examplebank/keys"),
            (
                "EXAMPLEBANK_DATABASE_URL_FILE",
                "/etc/examplebank/secrets/database-url",
            ),
        ],
    );
    good["volumeMounts"] = json!([
        {"name": "data", "mountPath": "/var/lib/examplebank"},
        {"name": "secrets", "mountPath": "/etc/examplebank/secrets", "readOnly": true}
    ]);
    assert_eq!(path_problems(&good, &pod), Vec::<String>::new());
    let mut outside = good.clone();
    outside["env"][0]["value"] = json!("/opt/keys");
    assert!(
        !path_problems(&outside, &pod).is_empty(),
        "a directory on the root file system"
    );
    let mut wrong_file = good.clone();
    wrong_file["env"][1]["value"] = json!("/etc/examplebank/secrets/master-key");
    assert!(
        !path_problems(&wrong_file, &pod).is_empty(),
        "a file the Secret does not hold"
    );
    let mut undefined = good.clone();
    undefined["volumeMounts"][0]["name"] = json!("nowhere");
    assert!(
        !path_problems(&undefined, &pod).is_empty(),
        "a mount without a volume"
    );
}

#[test]
fn the_security_check_catches_loose_pods() {
    let restricted = || {
        json!({
            "automountServiceAccountToken": false,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}
            },
            "containers": [{
                "name": "examplebank",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]}
                }
            }]
        })
    };
    assert_eq!(security_problems(&restricted()), Vec::<String>::new());
    type Loosen = fn(&mut Value);
    let loosen: &[(&str, Loosen)] = &[
        ("root", |p| p["securityContext"]["runAsUser"] = json!(0)),
        ("no runAsNonRoot", |p| {
            p["securityContext"]["runAsNonRoot"] = Value::Null
        }),
        ("writable root", |p| {
            p["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = json!(false)
        }),
        ("escalation", |p| {
            p["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = Value::Null
        }),
        ("capabilities kept", |p| {
            p["containers"][0]["securityContext"]["capabilities"]["drop"] = json!(["NET_RAW"])
        }),
        ("capability added", |p| {
            p["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["NET_ADMIN"])
        }),
        ("no seccomp", |p| {
            p["securityContext"]["seccompProfile"] = Value::Null
        }),
        ("container overrides to root", |p| {
            p["containers"][0]["securityContext"]["runAsUser"] = json!(0)
        }),
        ("host network", |p| p["hostNetwork"] = json!(true)),
        ("service-account token", |p| {
            p["automountServiceAccountToken"] = Value::Null
        }),
    ];
    for (what, change) in loosen {
        let mut pod = restricted();
        change(&mut pod);
        assert!(!security_problems(&pod).is_empty(), "{what} is caught");
    }
}

#[test]
fn the_dockerfile_check_catches_a_root_or_single_stage_image() {
    let good =
        "FROM rust:1-bookworm AS builder\nRUN cargo build --release --locked -p examplebank\n\
                FROM gcr.io/distroless/cc-debian12:nonroot\nUSER 65532:65532\nEXPOSE 8080\n\
                ENTRYPOINT [\"/usr/local/bin/examplebank\"]\n";
    assert_eq!(dockerfile_problems(good), Vec::<String>::new());
    for (what, bad) in [
        (
            "one stage",
            good.replacen("FROM rust:1-bookworm AS builder\n", "", 1),
        ),
        ("root", good.replace("USER 65532:65532", "USER root")),
        ("uid 0", good.replace("USER 65532:65532", "USER 0")),
        ("no user", good.replace("USER 65532:65532\n", "")),
        ("user only in the builder", {
            let moved = good.replace("USER 65532:65532\n", "");
            moved.replace("AS builder\n", "AS builder\nUSER 65532\n")
        }),
    ] {
        assert!(!dockerfile_problems(&bad).is_empty(), "{what} is caught");
    }
}

// ---- the example Secrets -------------------------------------------------------------------

/// (Secret name, key) pairs a value mounts or reads: projected or plain secret volumes and
/// `secretKeyRef`s, found anywhere below `value`.
fn secret_refs(value: &Value, out: &mut BTreeSet<(String, String)>) {
    match value {
        Value::Object(map) => {
            let items = |v: Option<&Value>| -> Vec<String> {
                v.and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|i| i["key"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            if let Some(name) = map.get("secretName").and_then(Value::as_str) {
                for key in items(map.get("items")) {
                    out.insert((name.to_owned(), key));
                }
                out.insert((name.to_owned(), String::new()));
            }
            if let Some(secret) = map.get("secret").and_then(Value::as_object) {
                if let Some(name) = secret.get("name").and_then(Value::as_str) {
                    for key in items(secret.get("items")) {
                        out.insert((name.to_owned(), key));
                    }
                    out.insert((name.to_owned(), String::new()));
                }
            }
            if let Some(reference) = map.get("secretKeyRef") {
                if let (Some(name), Some(key)) =
                    (reference["name"].as_str(), reference["key"].as_str())
                {
                    out.insert((name.to_owned(), key.to_owned()));
                }
            }
            for inner in map.values() {
                secret_refs(inner, out);
            }
        }
        Value::Array(items) => {
            for inner in items {
                secret_refs(inner, out);
            }
        }
        _ => {}
    }
}

/// deploy/kubernetes/secrets/secrets.example.yaml holds a Secret, with every key, for each
/// Secret a pod mounts, so an operator who fills it in gets pods that start.
#[test]
fn the_example_secrets_cover_every_secret_the_pods_mount() {
    let mut needed = BTreeSet::new();
    for doc in manifests() {
        if matches!(doc.kind(), "Deployment" | "Job" | "CronJob") {
            secret_refs(&doc.value, &mut needed);
        }
    }
    assert!(
        needed.iter().any(|(name, _)| name == "master-key")
            && needed.iter().any(|(name, _)| name == "signing-keys"),
        "the pods mount the master key and the signing keys: {needed:?}"
    );
    let examples = documents_in("deploy/kubernetes/secrets");
    let mut provided = BTreeSet::new();
    for doc in examples.iter().filter(|d| d.kind() == "Secret") {
        provided.insert((doc.name().to_owned(), String::new()));
        assert_eq!(doc.value["metadata"]["namespace"], json!("examplebank"));
        for (key, value) in doc.value["stringData"].as_object().expect("stringData") {
            assert_eq!(
                value,
                &json!("CHANGE-ME"),
                "{}: {key} must be a placeholder",
                doc.name()
            );
            provided.insert((doc.name().to_owned(), key.clone()));
        }
    }
    let missing: Vec<_> = needed.difference(&provided).collect();
    assert!(
        missing.is_empty(),
        "not in secrets.example.yaml: {missing:?}"
    );
}

/// Asserts the network check reported pods open to another namespace and to the internet.
fn opened_outside(problems: &str) {
    for whom in [
        "a pod in namespace default",
        "an address outside the cluster",
    ] {
        assert!(
            problems.contains(&format!("open to or from {whom}")),
            "{problems}"
        );
    }
}

#[test]
fn the_network_check_catches_a_missing_and_a_too_broad_policy() {
    let without = |name: &str| -> Vec<Doc> {
        manifests()
            .into_iter()
            .filter(|d| !(d.kind() == "NetworkPolicy" && d.name() == name))
            .collect()
    };
    let problems = network_problems(&without("transactions-to-services")).join("\n");
    assert!(
        problems.contains("calls Deployment users") && problems.contains("policies refuse it"),
        "{problems}"
    );
    let problems = network_problems(&without("allow-prometheus")).join("\n");
    assert!(
        problems.contains("Prometheus cannot scrape it"),
        "{problems}"
    );
    let problems = network_problems(&without("allow-postgresql")).join("\n");
    assert!(problems.contains("cannot reach PostgreSQL"), "{problems}");

    let mut open = manifests();
    open.extend(parse_documents(
        "too-broad.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: ui-and-users-anywhere\n  namespace: examplebank\nspec:\n  podSelector:\n    matchExpressions:\n      - key: app.kubernetes.io/component\n        operator: In\n        values: [\"ui\", \"users\"]\n  policyTypes: [\"Egress\", \"Ingress\"]\n  egress:\n    - {}\n  ingress:\n    - from:\n        - podSelector: {}\n",
    ));
    let problems = network_problems(&open).join("\n");
    assert!(problems.contains("though it never calls it"), "{problems}");
    opened_outside(&problems);

    // PostgreSQL opened to every namespace instead of its own, and to any address.
    let mut wide = without("allow-postgresql");
    wide.extend(parse_documents(
        "wide-postgresql.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: postgresql-anywhere\n  namespace: examplebank\nspec:\n  podSelector: {}\n  policyTypes: [\"Egress\"]\n  egress:\n    - to:\n        - namespaceSelector: {}\n        - ipBlock:\n            cidr: 0.0.0.0/0\n      ports:\n        - protocol: TCP\n          port: 5432\n",
    ));
    let problems = network_problems(&wide).join("\n");
    assert!(!problems.contains("cannot reach PostgreSQL"), "{problems}");
    opened_outside(&problems);
}
