//! The `warden` command line: `run` starts the appliance; the operator commands talk to a
//! running appliance's control API (`--api`, `WARDEN_TOKEN`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::json;
use tracing_subscriber::EnvFilter;
use warden_control::cli::{self, ApiArgs, Client};
use warden_lifecycle as engine;

/// jemalloc instead of glibc's malloc: after 9,000 sessions closed, glibc kept 7× the
/// process's pre-load memory; jemalloc, purging from a background thread, gives it back
/// within seconds (1.4× pre-load, docs/benchmarks.md) at no cost in logins per second
/// (÷ direct: 0.40 with glibc, 0.41–0.43 with jemalloc, same runs).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (before `main`, hence a symbol and
/// not code): purge from a background thread, so an idle process returns memory too;
/// dirty pages go back to the system after about a second, with no muzzy stage between;
/// no transparent huge pages for its memory: on kernels with THP "always" (Debian's, the
/// node image's) they raised an idle appliance's RSS from 23 to 59 MiB.
#[allow(unsafe_code, non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static std::ffi::c_char> = Some(
    // SAFETY: a pointer to the first byte of a NUL-terminated static string, which is
    // what jemalloc expects in `malloc_conf`; it lives as long as the program.
    unsafe { &*c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,thp:never".as_ptr() },
);

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Edge appliance for Minecraft Java hosting"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Take the listening sockets over from a running warden (then send it SIGQUIT).
        #[arg(long, short)]
        upgrade: bool,
    },
    /// The servers: state, players, memory, ETA, node, hosts.
    Status {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Start a server now (restoring it first if archived).
    Wake(ActionArgs),
    /// Stop a server now.
    Sleep {
        #[command(flatten)]
        target: ActionArgs,
        /// Stop it even with players on it.
        #[arg(long)]
        force: bool,
    },
    /// Archive a sleeping server's world (verified before the node copy goes).
    Archive(ActionArgs),
    /// Bring an archived world back to the node (the server stays asleep); with --backup,
    /// replace a sleeping server's world with a backup instead.
    Restore {
        #[command(flatten)]
        target: ActionArgs,
        /// The backup to restore (an id from `warden backups ID`, or `latest`). If it does
        /// not verify, the next older one is restored, and you are told. The current world
        /// is backed up first.
        #[arg(long)]
        backup: Option<String>,
    },
    /// Back up a server's world now (verified; online through RCON while it runs).
    Backup(ActionArgs),
    /// A server's backups, newest first.
    Backups {
        /// The server's id.
        id: String,
        /// Read and hash every blob of every backup (slow), instead of checking they exist.
        #[arg(long)]
        verify: bool,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The state store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Restart a server without disconnecting its players (warm swap through the anteroom).
    Restart {
        #[command(flatten)]
        target: ActionArgs,
        /// Start the replacement on this image (Docker servers): an upgrade. If it does not
        /// come up, the previous image runs again. Put it in the config as well, or the next
        /// container Warden creates after its own restart uses the config's image.
        #[arg(long)]
        image: Option<String>,
    },
    /// Move a server to another appliance.
    Migrate {
        #[command(flatten)]
        target: ActionArgs,
        /// The appliance to move it to.
        #[arg(long)]
        to: String,
    },
    /// The fleet's nodes: state, liveness, memory used and offered, servers, address.
    Nodes {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The capacity controller: nodes, RAM in use and waiting, the forecast over the lead
    /// time, what it plans and its last decisions ([capacity] on some appliance).
    Capacity {
        /// Print the API's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Pack servers onto fewer nodes: empty the node that is cheapest to free (its servers
    /// all movable without a disconnect and fitting elsewhere) by draining it. Runs nightly
    /// on its own ([node] consolidate).
    Consolidate {
        /// Only print the plan.
        #[arg(long)]
        dry_run: bool,
    },
    /// Find what nothing owns (archives, backups, containers and volumes of deleted servers,
    /// worlds set aside by recoveries, leftovers of interrupted restores, abandoned S3
    /// uploads) and delete what is older than [gc] min_age. Runs nightly on its own, after
    /// consolidation.
    Gc {
        /// Only report.
        #[arg(long)]
        dry_run: bool,
    },
    /// Act on one node of the fleet.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Lifecycle and player events; `--follow` streams them live.
    Events {
        #[arg(long, short)]
        follow: bool,
        /// Only this server's events.
        #[arg(long)]
        server: Option<String>,
        /// How many past events to print (without --follow).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Check configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The fleet's certificate authority for the edge↔node link (kept on the operator's
    /// machine, not on the appliances).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Certificates from the fleet CA: one per node and per edge.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Demand forecast: evaluate the model, replay traces through provisioning policies.
    Forecast {
        #[command(subcommand)]
        command: warden_forecast::cli::ForecastCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the control API's OpenAPI document.
    Openapi,
    /// A tiny Minecraft-speaking server to try Warden with (the quickstart's sleeping server):
    /// answers pings, and ends each visit with a message saying how long ago it woke.
    DemoServer {
        #[arg(long, default_value = "127.0.0.1:25570")]
        listen: std::net::SocketAddr,
        /// The name it greets players with.
        #[arg(long, default_value = "demo")]
        name: String,
    },
}

#[derive(clap::Args)]
struct ActionArgs {
    /// The server's id.
    id: String,
    /// Return once the action has started instead of following it to its end.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token. With --config, asks the appliance on this node over its admin socket
    /// (how the first admin token is made); otherwise through the API (admin token needed).
    Create {
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
        /// Who or what uses it.
        #[arg(long, default_value = "cli")]
        name: String,
        /// The running appliance's config file (to find its admin socket).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by its id; it stops working at once on every appliance.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy the embedded store to FILE: online (asked of the running appliance over its
    /// admin socket) and consistent (one read transaction), checked by opening the copy.
    /// Redis is backed up with Redis's own tools (see docs/operations.md).
    Backup {
        file: PathBuf,
        /// The appliance's config file (where its store and admin socket are).
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Take no new servers on NODE (the ones it owns keep running and waking there).
    Cordon { node: String },
    /// Let NODE take new servers again (also ends a drain).
    Uncordon { node: String },
    /// Take no new servers on NODE and move every server it owns to other nodes, one at
    /// a time (players kept through the anteroom); `warden nodes` shows it empty when done.
    Drain { node: String },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Make a new CA in DIR (ca.crt, ca.key 0600, crl.pem); refuses if one is there.
    Init {
        dir: PathBuf,
        /// The fleet's name, in the CA's subject.
        #[arg(long, default_value = "warden")]
        name: String,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Issue a certificate: `--node ID` (the node's lifecycle.appliance) for a node, which
    /// may be an edge too, or `--edge ID` for an edge only. Writes ID.crt, ID.key (0600),
    /// ca.crt and crl.pem into --out.
    Issue {
        /// The CA's directory.
        #[arg(long)]
        ca: PathBuf,
        #[arg(long, conflicts_with = "edge", required_unless_present = "edge")]
        node: Option<String>,
        #[arg(long)]
        edge: Option<String>,
        #[arg(long)]
        out: PathBuf,
        /// Days it is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Revoke a certificate by its serial (as `issue` printed it): rewrites the CA's
    /// crl.pem; copy it to every appliance's [link] crl and restart or upgrade them.
    Revoke {
        #[arg(long)]
        ca: PathBuf,
        serial: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Parse and check a config file; prints the problem with file, line and a hint.
    Check { file: PathBuf },
}

fn cert(command: CertCommand) -> anyhow::Result<()> {
    use warden_link::pki::{self, Role};
    match command {
        CertCommand::Issue {
            ca,
            node,
            edge,
            out,
            days,
        } => {
            let (role, id) = match (node, edge) {
                (Some(id), _) => (Role::Node, id),
                (None, Some(id)) => (Role::Edge, id),
                (None, None) => anyhow::bail!("say --node ID or --edge ID"),
            };
            let issued = pki::issue(&ca, role, &id, &out, days)?;
            println!(
                "issued {} for {} (serial {}, valid until {}): {} and {}",
                role.as_str(),
                pki::name_of(role, &id),
                issued.serial,
                issued.not_after.date(),
                issued.cert.display(),
                issued.key.display()
            );
            Ok(())
        }
        CertCommand::Revoke { ca, serial } => {
            let crl = pki::revoke(&ca, &serial)?;
            println!(
                "revoked {serial}: copy {} to every appliance's [link] crl",
                crl.display()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let api = cli.api;
    let client = || Client::new(&api);
    let act = |command: engine::Command, t: &ActionArgs| {
        client().and_then(|c| cli::action(&c, &command, &t.id, t.no_wait))
    };
    let result = match cli.command {
        Command::Run { config, upgrade } => warden_control::appliance::run(&config, upgrade),
        Command::Status { json } => client().and_then(|c| cli::status(&c, json)),
        Command::Wake(t) => act(engine::Command::Wake, &t),
        Command::Sleep { target, force } => act(engine::Command::Sleep { force }, &target),
        Command::Archive(t) => act(engine::Command::Archive, &t),
        Command::Restore { target, backup } => match backup {
            Some(backup) => act(engine::Command::RestoreBackup { backup }, &target),
            None => act(engine::Command::Restore, &target),
        },
        Command::Backup(t) => act(engine::Command::Backup, &t),
        Command::Backups { id, verify, json } => {
            client().and_then(|c| cli::backups(&c, &id, verify, json))
        }
        Command::Store {
            command: StoreCommand::Backup { file, config },
        } => warden_control::store_backup::run(&config, &file),
        Command::Restart { target, image } => act(engine::Command::Restart { image }, &target),
        Command::Migrate { target, to } => act(engine::Command::Migrate { to }, &target),
        Command::Events {
            follow,
            server,
            limit,
        } => client().and_then(|c| cli::events(&c, server.as_deref(), limit, follow)),
        Command::Nodes { json } => client().and_then(|c| cli::nodes(&c, json)),
        Command::Capacity { json } => client().and_then(|c| cli::capacity(&c, json)),
        Command::Consolidate { dry_run } => client().and_then(|c| cli::consolidate(&c, dry_run)),
        Command::Gc { dry_run } => client().and_then(|c| cli::gc(&c, dry_run)),
        Command::Node { command } => client().and_then(|c| match command {
            NodeCommand::Cordon { node } => cli::node_action(&c, "cordon", &node),
            NodeCommand::Uncordon { node } => cli::node_action(&c, "uncordon", &node),
            NodeCommand::Drain { node } => cli::node_action(&c, "drain", &node),
        }),
        Command::Token { command } => token(command, &api),
        Command::Ca {
            command: CaCommand::Init { dir, name },
        } => warden_link::pki::init_ca(&dir, &name)
            .map(|cert| {
                println!(
                    "CA made: {} (keep {} secret)",
                    cert.display(),
                    dir.join(warden_link::pki::CA_KEY).display()
                )
            })
            .map_err(anyhow::Error::from),
        Command::Cert { command } => cert(command),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "warden", &mut std::io::stdout());
            Ok(())
        }
        Command::Openapi => {
            println!("{}", warden_api::openapi_json());
            Ok(())
        }
        Command::DemoServer { listen, name } => warden_control::demo::run(listen, name),
        Command::Forecast { command } => {
            warden_forecast::cli::run(command).map_err(anyhow::Error::from)
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match warden_control::config::load(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} servers, {} wildcard routes)",
                    file.display(),
                    cfg.servers.len(),
                    cfg.routes.len()
                );
                Ok(())
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn token(command: TokenCommand, api: &ApiArgs) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            role,
            name,
            config: Some(config),
        } => {
            let cfg = warden_control::config::load(&config)?;
            let socket = warden_api::admin_socket::socket_path(&cfg.store.path);
            let secret =
                warden_api::admin_socket::request(&socket, &format!("token create {role} {name}"))?;
            println!("{secret}");
            Ok(())
        }
        TokenCommand::Create {
            role,
            name,
            config: None,
        } => {
            let c = Client::new(api)?;
            let created = c.call(
                reqwest::Method::POST,
                "/v1/tokens",
                Some(&json!({ "role": role, "name": name })),
            )?;
            println!("{}", created["secret"].as_str().unwrap_or_default());
            Ok(())
        }
        TokenCommand::List => cli::token_list(&Client::new(api)?),
        TokenCommand::Revoke { id } => {
            Client::new(api)?.call(reqwest::Method::DELETE, &format!("/v1/tokens/{id}"), None)?;
            println!("revoked {id}");
            Ok(())
        }
    }
}
