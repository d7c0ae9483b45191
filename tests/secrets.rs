//! Tokens stay in the host: nothing the program writes contains one.

use crate::support::Fixture;
use crate::support::run;

const TOKEN: &str = "tok-SENTINEL-7f3a9c41d2";

#[test]
fn no_output_log_or_state_contains_a_token() {
    // The sandbox knows the token, so posts succeed only if the host sent it.
    let scenario = format!(
        "[[account]]\nname = \"alice\"\ntoken = \"{TOKEN}\"\n\n\
         [[account]]\nname = \"bob\"\ntoken = \"{TOKEN}-bob\"\nthen = {{ respond = \"invalid-token\" }}\n"
    );
    let f = Fixture::new(&scenario, 3);
    // alice's token comes from the environment, bob's from a file.
    std::fs::write(f.path("bob.token"), format!("{TOKEN}-bob\n")).unwrap();
    let accounts = format!(
        "[accounts.alice]\nbase_url = \"{url}\"\ntoken_env = \"ALICE_TOKEN\"\n\n\
         [accounts.bob]\nbase_url = \"{url}\"\ntoken_file = \"bob.token\"\n",
        url = f.sandbox.url()
    );
    std::fs::write(f.path("accounts.toml"), accounts).unwrap();

    let mut written = String::new();
    let mut capture = |args: &[&str]| {
        let out = run(f
            .command(args)
            .env("ALICE_TOKEN", TOKEN)
            // Everything but the compiler's own chatter, which is slow.
            .env(
                "ORCHESTRATOR_LOG",
                "trace,cranelift_codegen=warn,cranelift_frontend=warn,regalloc2=warn,\
                 wasmtime_internal_cranelift=warn,wasmtime_environ=warn,wasmtime=warn",
            ));
        written.push_str(&out.stdout);
        written.push_str(&out.stderr);
        out
    };
    let out = capture(&["--run"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(f.sandbox.counters().created_by_account["alice"], 3);
    capture(&["--status"]);
    capture(&["--status", "--json"]);
    // A missing variable is reported by name, not by value.
    let missing = run(f.command(&["--run"]).env_remove("ALICE_TOKEN"));
    assert!(missing.stderr.contains("ALICE_TOKEN"), "{}", missing.stderr);
    written.push_str(&missing.stderr);

    assert!(written.len() > 1000, "the run wrote its logs");
    assert!(
        !written.contains(TOKEN),
        "a token leaked into output:\n{written}"
    );
    for entry in std::fs::read_dir(f.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("orchestrator-state") {
            let bytes = std::fs::read(&path).unwrap();
            let leaked = bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes());
            assert!(!leaked, "a token leaked into {name}");
        }
    }
}
