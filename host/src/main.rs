//! The `fedmcp` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fedmcp::app::Host;
use fedmcp::config::HostConfig;
use tokio_util::sync::CancellationToken;

// glibc's allocator was a fifth of the CPU of a forwarded call; with mimalloc tools/call
// throughput rose 20-50% (`cargo bench --bench http_calls`, which uses it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long calls in flight may run after SIGTERM or Ctrl-C.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Parser)]
#[command(name = "fedmcp", version, about = "An MCP server for WebAssembly plugins")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the plugins folder over Streamable HTTP (default) or stdio.
    Serve {
        /// Host configuration file (defaults for every field otherwise).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The plugins folder (overrides the config).
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Address to listen on (overrides the config), e.g. 127.0.0.1:8931; port 0 picks one.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve one client over stdin/stdout instead of HTTP.
        #[arg(long)]
        stdio: bool,
    },
    /// Load every plugin and manifest, print what each serves, and fail on any error.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        plugins: Option<PathBuf>,
    },
    /// Make this host's signing key pair (Ed25519), for the tokens it presents to peers.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Mint a signed token (for a client, or for another host to present to this one).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Start a plugin, or build one into a plugins folder.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write <dir>/<name>.pem (private) and <dir>/<name>.pub.pem (give this one to peers).
    Generate {
        /// The host's name: the `iss` and `kid` of its tokens.
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "keys")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a token signed with a host key.
    Issue {
        /// The subject (`sub`): who the token is for.
        #[arg(long)]
        sub: String,
        /// The audience (`aud`): the host that will accept it.
        #[arg(long)]
        aud: String,
        /// Grants, space-separated: `*`, `tools:<pattern>`, `resources:<pattern>`, `prompts:<pattern>`.
        #[arg(long, default_value = "")]
        scope: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// The signing key (PEM); with --name. Default: [identity] of --config.
        #[arg(long, requires = "name")]
        key: Option<PathBuf>,
        /// The issuer (`iss`, and `kid`) the key signs as.
        #[arg(long, requires = "key")]
        name: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a ready-to-build plugin (source, manifest, README).
    New {
        /// The plugin's name; its tools appear as <name>__<tool>.
        name: String,
        #[arg(long, value_enum)]
        lang: fedmcp::scaffold::Language,
        /// Where to create it (default: ./<name>).
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Build the plugin in DIR into the plugins folder, with its manifest.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
    },
    /// Push a plugin to an OCI registry as a Wasm artifact, its manifest beside it.
    Push {
        /// The component (.wasm).
        wasm: PathBuf,
        /// Where to: oci://HOST[:PORT]/REPO:TAG.
        reference: String,
        /// The plugin's manifest (plugin.toml), pushed as a second layer.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Sign it with this Ed25519 private key (PEM, `fedmcp keys generate`), cosign's layout.
        #[arg(long)]
        sign: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Add a signature to a plugin already in an OCI registry (another key beside the first).
    Sign {
        /// What: oci://HOST[:PORT]/REPO[:TAG|@sha256:…] (a tag is signed at its current digest).
        reference: String,
        /// The Ed25519 private key (PEM, `fedmcp keys generate`).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Pull a plugin from an OCI registry into the plugins folder (a running host loads it).
    Pull {
        /// What: oci://HOST[:PORT]/REPO[:TAG|@sha256:…].
        reference: String,
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
        /// Require a signature by this public key (PEM); repeat to trust several.
        #[arg(long = "verify-key")]
        verify_keys: Vec<PathBuf>,
        /// The plugin's file name (default: the repository's last part).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(clap::Args)]
struct RegistryArgs {
    /// Plain HTTP to a registry that is not on loopback (loopback ones always are).
    #[arg(long)]
    insecure: bool,
    /// Registry credentials: a docker-style config.json (default: $REGISTRY_AUTH_FILE,
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json).
    #[arg(long)]
    auth_file: Option<PathBuf>,
}

impl From<RegistryArgs> for fedmcp::plugin::oci::RegistryOptions {
    fn from(args: RegistryArgs) -> Self {
        Self { insecure: args.insecure, auth_file: args.auth_file }
    }
}

fn load_config(config: Option<PathBuf>, plugins: Option<PathBuf>) -> anyhow::Result<HostConfig> {
    let mut host_config = match config {
        Some(path) => HostConfig::load(&path)?,
        None => HostConfig::default(),
    };
    if let Some(plugins) = plugins {
        host_config.plugins_dir = plugins;
    }
    Ok(host_config)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config, plugins, listen, stdio } => {
            let mut config = load_config(config, plugins)?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if !stdio {
                fedmcp::app::check_exposure(&config)?;
            }
            // Listen (or take the stdio client) at once; plugins load in the background and
            // are served as each is ready.
            let host = Host::launch(&config).await?;
            if stdio {
                let served = fedmcp::transport::serve_stdio(host.shared.clone()).await;
                host.flush_traces().await;
                served?;
                return Ok(ExitCode::SUCCESS);
            }
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                signal.cancel();
                // A client that keeps its connection open must not keep the process alive.
                tokio::time::sleep(SHUTDOWN_GRACE + SHUTDOWN_GRACE / 2).await;
                tracing::warn!("connections still open after the grace period; exiting");
                std::process::exit(0);
            });
            host.serve_http(&config, shutdown, SHUTDOWN_GRACE).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { command: KeysCommand::Generate { name, dir } } => {
            let written = fedmcp::auth::keys::generate(&dir, &name)?;
            println!("private key: {} (keep it secret; [identity] key = ...)", written.private.display());
            println!("public key:  {} (peers trust it: [[auth.issuers]] public_key = ...)", written.public.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { command: TokenCommand::Issue { sub, aud, scope, ttl, key, name, config } } => {
            let (name, key) = match (name, key) {
                (Some(name), Some(key)) => (name, key),
                _ => {
                    let config = load_config(config, None)?;
                    let identity = config.identity.ok_or_else(|| {
                        anyhow::anyhow!("no signing key: give --key and --name, or a --config with an [identity]")
                    })?;
                    (identity.name, identity.key)
                }
            };
            let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
            if let Some(bad) = scopes.iter().find(|s| !fedmcp::auth::is_grant(s)) {
                anyhow::bail!("--scope: {bad:?} is not *, tools:<pattern>, resources:<pattern> or prompts:<pattern>");
            }
            let signer = fedmcp::auth::keys::Signer::load(&name, &key)?;
            let request = fedmcp::auth::keys::TokenRequest {
                subject: sub,
                audience: aud,
                scopes,
                ttl: std::time::Duration::from_secs(ttl),
                actor: None,
            };
            let (token, _) = signer.mint(&request)?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin { command: PluginCommand::New { name, lang, path } } => {
            let dir = path.unwrap_or_else(|| PathBuf::from(&name));
            let written = fedmcp::scaffold::new_plugin(&name, lang, &dir)?;
            for file in written {
                println!("created {}", file.display());
            }
            println!("next: fedmcp plugin build {} --plugins <your plugins folder>", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin { command: PluginCommand::Build { dir, plugins } } => {
            let built = fedmcp::scaffold::build_plugin(&dir, &plugins)?;
            println!("built {}", built.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin { command: PluginCommand::Push { wasm, reference, manifest, sign, registry } } => {
            use fedmcp::plugin::oci;
            let target = oci::OciReference::parse(&reference)?;
            let pushed = oci::push(&target, &wasm, manifest.as_deref(), sign.as_deref(), &registry.into()).await?;
            println!("pushed {target} ({})", pushed.digest);
            println!("pull by digest: oci://{}/{}@{}", target.registry(), target.repository(), pushed.digest);
            match pushed.signature_tag {
                Some(tag) => println!("signed: oci://{}/{}:{tag}", target.registry(), target.repository()),
                None => println!("not signed (give --sign KEY to sign)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin { command: PluginCommand::Sign { reference, key, registry } } => {
            use fedmcp::plugin::oci;
            let target = oci::OciReference::parse(&reference)?;
            let (digest, tag) = oci::sign(&target, &key, &registry.into()).await?;
            println!("signed {target} ({digest}): oci://{}/{}:{tag}", target.registry(), target.repository());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin { command: PluginCommand::Pull { reference, plugins, verify_keys, name, registry } } => {
            use fedmcp::plugin::oci;
            let source = oci::OciReference::parse(&reference)?;
            let name = name.unwrap_or_else(|| source.default_name().to_owned());
            let trusted = verify_keys
                .iter()
                .map(|path| oci::signature::TrustedKey::load(path))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            let (fetched, installed) = oci::pull(&source, &name, &plugins, &trusted, &registry.into()).await?;
            let wasm = plugins.join(format!("{name}.wasm"));
            match installed {
                oci::Installed::Written => println!("pulled {source} ({}) into {}", fetched.digest, wasm.display()),
                oci::Installed::Unchanged => println!("{} is already {source} ({})", wasm.display(), fetched.digest),
            }
            match fetched.signed_by {
                Some(key) => println!("signature verified with {key}"),
                None => eprintln!("warning: no --verify-key given: the signature was not checked"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, plugins } => {
            let config = load_config(config, plugins)?;
            let host = Host::start(&config).await?;
            let catalog = &host.shared.catalog;
            for plugin in catalog.plugins() {
                println!("{} ({})", plugin.name, plugin.path.display());
                for tool in &plugin.tools {
                    println!("  tool      {}", tool.name);
                }
                for resource in &plugin.resources {
                    println!("  resource  {}", resource.uri);
                }
                for template in &plugin.resource_templates {
                    println!("  template  {}", template.uri_template);
                }
                for prompt in &plugin.prompts {
                    println!("  prompt    {}", prompt.name);
                }
                println!(
                    "  limits    memory {} MiB, {} ms per call",
                    plugin.memory_limit_mb(),
                    plugin.timeout().as_millis()
                );
                println!("  grants    {}", plugin.manifest.describe_grants());
            }
            let failures = catalog.failures();
            for failure in &failures {
                eprintln!("error: {}", failure.reason);
            }
            Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "fedmcp=info,warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fedmcp: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fedmcp: {error:#}");
            ExitCode::FAILURE
        }
    }
}
