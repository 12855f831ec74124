//! The `wharf` command line: the binary's edge, where errors become anyhow.

mod cli;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "Kafka Connect-compatible connectors as WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run connectors in one standalone process until SIGINT/SIGTERM, with
    /// the REST API to add, change and inspect connectors while it runs.
    Run {
        /// Connector config files (YAML); none starts an empty worker that
        /// takes connectors over REST.
        configs: Vec<PathBuf>,
        /// Worker config (YAML): bootstrap.servers, offset.storage, producer.*,
        /// consumer.*. Without one, sources feed sinks in-process.
        #[arg(long)]
        worker: Option<PathBuf>,
        /// Keep source offsets in this file (overrides the worker config's
        /// offset.storage; default .wharf/standalone.offsets.json).
        #[arg(long)]
        offsets: Option<PathBuf>,
        #[command(flatten)]
        cache: CacheArgs,
        /// Seconds between progress lines (0 turns them off).
        #[arg(long, default_value_t = 5)]
        progress: u64,
        /// REST API address (default: the worker config's `listeners`, else
        /// 127.0.0.1:8083; port 0 picks a free port; "none" turns it off).
        #[arg(long, env = "WHARF_LISTEN")]
        listen: Option<String>,
        /// Apply connector YAML files from this folder while running: new or
        /// changed files create or reconfigure, removed files delete.
        #[arg(long)]
        watch: Option<PathBuf>,
    },
    /// Join a group of workers (distributed mode): connectors are created
    /// over the REST API of any member and their tasks spread over all.
    Worker {
        /// Worker config (YAML): group.id, bootstrap.servers, topics.
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        cache: CacheArgs,
        /// REST API address (default: the worker config's `listeners`, else 127.0.0.1:8083).
        #[arg(long, env = "WHARF_LISTEN")]
        listen: Option<String>,
    },
    /// Check connector configs against their plugins' specs; starts nothing.
    Validate {
        #[arg(required = true)]
        configs: Vec<PathBuf>,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Scaffold, build and inspect wasm plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(clap::Args)]
struct CacheArgs {
    /// Directory for compiled plugin code (default: ~/.cache/wharf/components).
    #[arg(long, env = "WHARF_COMPILE_CACHE")]
    compile_cache: Option<PathBuf>,
    /// Compile plugins on every start instead of caching machine code.
    #[arg(long)]
    no_compile_cache: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Source,
    Sink,
    Transform,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a new plugin crate that builds as generated.
    New {
        name: String,
        #[arg(long, value_enum)]
        kind: Kind,
        /// Parent directory for the new crate.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build a plugin crate into a wasm component.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Print a component's world, version and config spec.
    Inspect {
        file: String,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// List the built-in plugins.
    List {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Compile a component into a compile cache artifact (a worker runs
    /// this as a child process).
    #[command(hide = true)]
    Precompile { wasm: PathBuf, out: PathBuf },
}

impl CacheArgs {
    fn dir(&self) -> Option<PathBuf> {
        if self.no_compile_cache {
            return None;
        }
        self.compile_cache.clone().or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/wharf/components"))
        })
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        match cli.command {
            Command::Run {
                configs,
                worker,
                offsets,
                cache,
                progress,
                listen,
                watch,
            } => {
                let opts = cli::run::RunOptions {
                    worker,
                    offsets,
                    cache: cache.dir(),
                    progress_secs: progress,
                    listen,
                    watch,
                };
                cli::run::run(&configs, opts).await
            }
            Command::Worker {
                config,
                cache,
                listen,
            } => {
                cli::worker::run(cli::worker::WorkerOptions {
                    config,
                    cache: cache.dir(),
                    listen,
                })
                .await
            }
            Command::Validate { configs, cache } => cli::run::validate(&configs, cache.dir()).await,
            Command::Plugin { command } => match command {
                PluginCommand::New { name, kind, dir } => {
                    cli::scaffold::new_plugin(&name, kind, &dir)
                }
                PluginCommand::Build { dir } => cli::scaffold::build(&dir).map(|_| ()),
                PluginCommand::Inspect { file, cache } => {
                    cli::inspect::inspect(&file, cache.dir()).await
                }
                PluginCommand::List { cache } => cli::inspect::list(cache.dir()).await,
                PluginCommand::Precompile { wasm, out } => {
                    wharf::plugin::precompile_file(&wasm, &out).map_err(Into::into)
                }
            },
        }
    })
}
