//! The `broker` command line.

use crate::config::{self, Config};
use crate::secrets::SecretString;
use crate::{app, identity};
use clap::{Parser, Subcommand};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "broker",
    version,
    about = "Switchboard identity federation broker"
)]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "BROKER_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// `--config FILE` (`-c`): accepted anywhere after the command that takes it, so
/// `broker user list --config FILE` and `broker user --config FILE list` are the same.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(
        long = "config",
        short = 'c',
        global = true,
        value_name = "FILE",
        default_value = "config/broker.toml"
    )]
    pub path: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Load and validate a config file, then exit.
    CheckConfig { file: PathBuf },
    /// Ask for a password (without echo; piped: one line of standard input) and print
    /// its argon2id hash.
    HashPassword,
    /// Manage users kept in the store.
    User {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: UserAction,
    },
    /// Manage the groups the broker holds (managed groups).
    Group {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: GroupAction,
    },
    /// Manage people's API keys.
    Key {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Role rules: see why a user holds which role.
    Roles {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: RolesAction,
    },
    /// The master key that seals secrets at rest.
    Secrets {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Provider plugins loaded at run time.
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsAction {
    /// Re-seal every sealed value in the store under the current master key
    /// (`[secrets] master_key*`), opening them with it or a previous key
    /// (`previous_master_key_files`). Safe to interrupt and run again.
    RotateMasterKey {
        /// Re-seal at most this many values, then stop (run again to go on).
        #[arg(long, value_name = "N")]
        max_rows: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// Print a plugin's name, version, ABI, capabilities, compiler and sha256, or why
    /// it cannot be loaded. Reads the file only: runs none of its code.
    Inspect { path: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum RolesAction {
    /// Print every role rule, whether it matched for the user and why, their direct
    /// grants, and the resulting roles and permissions.
    Explain {
        /// The user id (the `sub` apps see).
        #[arg(allow_hyphen_values = true)]
        user_id: String,
        /// Explain toward this client: its own roles count too.
        #[arg(long)]
        client: Option<String>,
        /// Only as a login through this provider (default: each linked provider).
        #[arg(long)]
        provider: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupAction {
    /// Create a managed group; prints its id.
    Add {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List managed groups.
    List,
    /// Delete a managed group (its members lose it at their next token).
    Delete {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Add a user to a group.
    AddMember {
        #[arg(allow_hyphen_values = true)]
        group: String,
        #[arg(allow_hyphen_values = true)]
        user: String,
    },
    /// Remove a user from a group.
    RemoveMember {
        #[arg(allow_hyphen_values = true)]
        group: String,
        #[arg(allow_hyphen_values = true)]
        user: String,
    },
    /// List a group's members.
    Members {
        #[arg(allow_hyphen_values = true)]
        group: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Make an API key for a user; prints its id, then its secret (shown this once).
    Create {
        #[arg(allow_hyphen_values = true)]
        user: String,
        /// To recognise the key by.
        #[arg(long)]
        name: String,
        /// A permission the key may use (repeat for more); it holds only what the
        /// user's own permissions allow at each use.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// How long the key lives, e.g. `30d` or `12h` (at most `[api_keys]
        /// max_lifetime`).
        #[arg(long, value_parser = parse_lifetime)]
        expires_in: i64,
    },
    /// List a user's keys: id, status, expiry, name, scopes.
    List {
        #[arg(allow_hyphen_values = true)]
        user: String,
    },
    /// Revoke a user's key at once.
    Revoke {
        #[arg(allow_hyphen_values = true)]
        user: String,
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
}

/// A key's lifetime in seconds, from `30d`, `12h`, `90m`.
fn parse_lifetime(text: &str) -> Result<i64, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    i64::try_from(duration.as_secs()).map_err(|_| format!("{text:?} is too long"))
}

// User ids are random base64url, so one in 64 starts with '-': every id argument
// takes a leading hyphen as part of the value, not as an option.
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a local user; asks for the password (piped: one line of standard input).
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// List users.
    List,
    /// Disable a user: ends their sessions and refresh tokens.
    Disable {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Enable a disabled user.
    Enable {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Set a user's password (asked for, or one piped line); ends their sessions.
    SetPassword {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Grant a role directly (global, or with --client one client's role).
    GrantRole {
        #[arg(allow_hyphen_values = true)]
        id: String,
        role: String,
        #[arg(long)]
        client: Option<String>,
    },
    /// Remove a direct role grant.
    RevokeRole {
        #[arg(allow_hyphen_values = true)]
        id: String,
        role: String,
        #[arg(long)]
        client: Option<String>,
    },
    /// List a user's direct role grants (`broker roles explain` shows all roles).
    Roles {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// List a user's audit events (identities linked, roles granted or revoked).
    Audit {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Start(#[from] app::StartError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error("password: {0}")]
    Password(String),
    #[error("the password is empty")]
    EmptyPassword,
    #[error("the two passwords differ")]
    PasswordMismatch,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Plugin(#[from] crate::providers::plugin::InspectError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Rotation(#[from] crate::rekey::RotationError),
}

/// A new password: asked twice without echo when standard input is a terminal;
/// otherwise one line of standard input (scripts and tests pipe it in).
fn read_password() -> Result<SecretString, CliError> {
    let password = if std::io::stdin().is_terminal() {
        let first = SecretString::new(rpassword::prompt_password("Password: ")?);
        let again = SecretString::new(rpassword::prompt_password("Repeat the password: ")?);
        if first != again {
            return Err(CliError::PasswordMismatch);
        }
        first
    } else {
        read_password_line(&mut std::io::stdin().lock())?
    };
    if password.expose().is_empty() {
        return Err(CliError::EmptyPassword);
    }
    Ok(password)
}

/// One line of `input`, without its line ending.
fn read_password_line(input: &mut impl BufRead) -> Result<SecretString, CliError> {
    // Room for any sane password, so the line is not moved (and left behind) as it grows.
    let mut line = SecretString::new(String::with_capacity(1024));
    input.read_line(line.expose_mut())?;
    let text = line.expose_mut();
    while text.ends_with(['\n', '\r']) {
        text.pop();
    }
    Ok(line)
}

fn hash(pw: &SecretString) -> Result<String, CliError> {
    switchboard_local::hash_password(pw.expose()).map_err(|e| CliError::Password(e.to_string()))
}

fn now() -> i64 {
    use crate::clock::Clock;
    crate::clock::SystemClock.now()
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve { config } => serve(config::load(&config.path)?).await,
        Command::CheckConfig { file } => {
            let c = config::load(&file)?;
            // Plugin files are read and checked as loading would, without running them.
            for p in c.providers.iter().filter(|p| p.kind == "plugin") {
                let context = switchboard_plugin_api::ProviderContext::new(
                    &p.id,
                    p.options.clone(),
                    c.dev_mode,
                );
                let info = crate::providers::plugin::check(context)
                    .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
                println!(
                    "providers.{}: plugin {} {} (abi {}.{})",
                    p.id, info.name, info.version, info.abi_major, info.abi_minor
                );
            }
            // The theme is read and every page rendered once, as at start-up.
            crate::web::Pages::load(&c.ui)
                .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
            println!(
                "{}: ok ({} clients, {} providers)",
                file.display(),
                c.clients.len(),
                c.providers.len()
            );
            Ok(())
        }
        Command::Plugin {
            action: PluginAction::Inspect { path },
        } => {
            let file = crate::providers::plugin::inspect(&path, None)?;
            println!("{}", file.info);
            Ok(())
        }
        Command::HashPassword => {
            println!("{}", hash(&read_password()?)?);
            Ok(())
        }
        Command::User { config, action } => user(config::load(&config.path)?, action).await,
        Command::Group { config, action } => group(config::load(&config.path)?, action).await,
        Command::Key { config, action } => key(config::load(&config.path)?, action).await,
        Command::Secrets {
            config,
            action: SecretsAction::RotateMasterKey { max_rows },
        } => rotate_master_key(config::load(&config.path)?, max_rows).await,
        Command::Roles {
            config,
            action:
                RolesAction::Explain {
                    user_id,
                    client,
                    provider,
                },
        } => {
            explain(
                config::load(&config.path)?,
                &user_id,
                client.as_deref(),
                provider.as_deref(),
            )
            .await
        }
    }
}

async fn rotate_master_key(config: Config, max_rows: Option<u64>) -> Result<(), CliError> {
    if max_rows == Some(0) {
        return Err(CliError::Usage("--max-rows must be at least 1".into()));
    }
    let master = app::load_master_key(&config)?;
    let store = app::open_store(&config).await?;
    let report = crate::rekey::rotate_master_key(&store, &master, max_rows).await?;
    println!(
        "master key {}: {} sealed values, {} already current, {} re-sealed, {} remaining",
        master.key_id(),
        report.total,
        report.already_current,
        report.resealed,
        report.remaining
    );
    if report.remaining > 0 {
        println!("not finished: run the command again to re-seal the rest");
    } else if !master.previous_key_ids().is_empty() {
        println!(
            "done: every value is sealed under the current key; remove previous_master_key_files from the config and restart every replica"
        );
    }
    Ok(())
}

async fn explain(
    config: Config,
    user_id: &str,
    client: Option<&str>,
    provider: Option<&str>,
) -> Result<(), CliError> {
    if let Some(c) = client
        && !config.clients.contains_key(c)
    {
        return Err(CliError::Usage(format!("no client {c:?} is configured")));
    }
    let store = app::open_store(&config).await?;
    let explanations =
        identity::explain_user(&store, &config.roles, user_id, provider, client).await?;
    let mut out = String::new();
    for (i, e) in explanations.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        out.push_str(&format!("user: {user_id}\n{e}"));
    }
    println!("{out}");
    Ok(())
}

async fn key(config: Config, action: KeyAction) -> Result<(), CliError> {
    use crate::identity::api_keys::{self, NewApiKey};
    let store = app::open_store(&config).await?;
    match action {
        KeyAction::Create {
            user,
            name,
            scopes,
            expires_in,
        } => {
            let new = NewApiKey {
                name: &name,
                scopes: &scopes,
                lifetime: expires_in,
            };
            let created = api_keys::create_api_key(&store, &config, &user, &new, "cli", now())
                .await?
                .map_err(|e| CliError::Usage(e.to_string()))?;
            println!("{}", created.key.id);
            println!("{}", created.secret.expose());
        }
        KeyAction::List { user } => {
            let at = now();
            for k in api_keys::list_api_keys(&store, &user).await? {
                let status = match (k.revoked_at, k.expires_at <= at) {
                    (Some(_), _) => "revoked",
                    (None, true) => "expired",
                    (None, false) => "active",
                };
                println!(
                    "{}\t{status}\t{}\t{}\t{}",
                    k.id,
                    k.expires_at,
                    k.name,
                    k.scopes.join(" ")
                );
            }
        }
        KeyAction::Revoke { user, key } => {
            if !api_keys::revoke_api_key(&store, &user, &key, "cli", now()).await? {
                return Err(CliError::Usage(format!("{user} has no live key {key}")));
            }
        }
    }
    Ok(())
}

async fn group(config: Config, action: GroupAction) -> Result<(), CliError> {
    use crate::identity::groups;
    let store = app::open_store(&config).await?;
    match action {
        GroupAction::Add { name, description } => {
            let g =
                groups::create_group(&store, &name, description.as_deref(), "cli", now()).await?;
            println!("{}", g.id);
        }
        GroupAction::List => {
            let mut after = None;
            loop {
                let page = store
                    .list_groups_page(after.as_ref(), 200)
                    .await
                    .map_err(app::StartError::from)?;
                for g in &page {
                    println!("{}\t{}", g.id, g.name);
                }
                match page.last() {
                    Some(last) if page.len() == 200 => {
                        after = Some(crate::store::PageCursor {
                            created_at: last.created_at,
                            id: last.id.clone(),
                        });
                    }
                    _ => break,
                }
            }
        }
        GroupAction::Delete { id } => groups::delete_group(&store, &id, "cli", now()).await?,
        GroupAction::AddMember { group, user } => {
            if !groups::add_member(&store, &group, &user, "cli", now()).await? {
                println!("{user} already is a member");
            }
        }
        GroupAction::RemoveMember { group, user } => {
            if !groups::remove_member(&store, &group, &user, "cli", now()).await? {
                println!("{user} was not a member");
            }
        }
        GroupAction::Members { group } => {
            if store
                .get_group(&group)
                .await
                .map_err(app::StartError::from)?
                .is_none()
            {
                return Err(identity::IdentityError::NoSuchGroup.into());
            }
            let filter = crate::store::UserFilter {
                group: Some(group),
                ..Default::default()
            };
            let mut after = None;
            loop {
                let page = store
                    .list_users_page(&filter, after.as_ref(), 200)
                    .await
                    .map_err(app::StartError::from)?;
                for u in &page {
                    println!("{}\t{}", u.id, u.email.as_deref().unwrap_or("-"));
                }
                match page.last() {
                    Some(last) if page.len() == 200 => {
                        after = Some(crate::store::PageCursor {
                            created_at: last.created_at,
                            id: last.id.clone(),
                        });
                    }
                    _ => break,
                }
            }
        }
    }
    Ok(())
}

async fn user(config: Config, action: UserAction) -> Result<(), CliError> {
    let store = app::open_store(&config).await?;
    match action {
        UserAction::Add {
            email,
            username,
            name,
        } => {
            let h = hash(&read_password()?)?;
            let new = identity::NewLocalUser {
                email: &email,
                username: username.as_deref(),
                name: name.as_deref(),
                password_hash: Some(&h),
            };
            let u = identity::add_local_user(&store, &new, "cli", now()).await?;
            println!("{}", u.id);
        }
        UserAction::List => {
            for u in store.list_users().await.map_err(app::StartError::from)? {
                println!(
                    "{}\t{}\t{}\t{}",
                    u.id,
                    u.status.as_str(),
                    u.email.as_deref().unwrap_or("-"),
                    u.username.as_deref().unwrap_or("-")
                );
            }
        }
        UserAction::Disable { id } => identity::disable_user(&store, &id, "cli", now()).await?,
        UserAction::Enable { id } => identity::enable_user(&store, &id, "cli", now()).await?,
        UserAction::SetPassword { id } => {
            let h = hash(&read_password()?)?;
            identity::set_password(&store, &id, &h, "cli", now()).await?;
        }
        UserAction::GrantRole { id, role, client } => {
            let new =
                identity::grant_role(&store, &config, &id, &role, client.as_deref(), "cli", now())
                    .await?;
            if !new {
                println!("{id} already had {role}");
            }
        }
        UserAction::RevokeRole { id, role, client } => {
            if !identity::revoke_role(&store, &id, &role, client.as_deref(), "cli", now()).await? {
                return Err(CliError::Usage(format!(
                    "{id} has no direct grant of {role}{}",
                    client
                        .map(|c| format!(" for client {c}"))
                        .unwrap_or_default()
                )));
            }
        }
        UserAction::Audit { id } => {
            for e in store.list_audit(&id).await.map_err(app::StartError::from)? {
                println!("{}\t{}\t{}", e.at, e.kind, e.detail);
            }
        }
        UserAction::Roles { id } => {
            if store
                .get_user(&id)
                .await
                .map_err(app::StartError::from)?
                .is_none()
            {
                return Err(identity::IdentityError::NoSuchUser.into());
            }
            for g in store
                .list_role_grants(&id)
                .await
                .map_err(app::StartError::from)?
            {
                match &g.client_id {
                    Some(c) => println!("{}\tclient {c}", g.role),
                    None => println!("{}\tglobal", g.role),
                }
            }
        }
    }
    Ok(())
}

async fn serve(config: Config) -> Result<(), CliError> {
    let demo = config.clients.values().any(|c| match &c.auth {
        config::ClientAuth::Secret(s) => s.expose() == "example-secret",
        config::ClientAuth::None => false,
    });
    if demo || config.dev_mode {
        tracing::warn!(
            "running with demo settings (dev_mode, demo client secret, demo user admin@example.com / password): never use them in production"
        );
    }
    let app = app::build(config).await?;
    tracing::info!(issuer = %app.config.issuer, listen = %app.config.listen, "Switchboard starting");
    app.keyring.spawn_maintenance();
    app::spawn_garbage_collection(&app);
    app::spawn_change_follower(&app);
    app::serve(app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("broker").chain(args.iter().copied())).unwrap()
    }

    fn user_config(cli: &Cli) -> &std::path::Path {
        match &cli.command {
            Command::User { config, .. } | Command::Roles { config, .. } => &config.path,
            Command::Serve { config } => &config.path,
            other => panic!("not a command with a config: {other:?}"),
        }
    }

    #[test]
    fn key_create_takes_repeated_scopes_and_a_human_lifetime() {
        let cli = parse(&[
            "key",
            "create",
            "-u1",
            "--name",
            "ci",
            "--scope",
            "a:b",
            "--scope",
            "c:d",
            "--expires-in",
            "2d",
        ]);
        let Command::Key {
            action:
                KeyAction::Create {
                    user,
                    scopes,
                    expires_in,
                    ..
                },
            ..
        } = cli.command
        else {
            panic!("{cli:?}");
        };
        assert_eq!((user.as_str(), expires_in), ("-u1", 2 * 86_400));
        assert_eq!(scopes, ["a:b", "c:d"]);
        assert!(parse_lifetime("soon").is_err());
        let no_scope = [
            "broker",
            "key",
            "create",
            "u1",
            "--name",
            "x",
            "--expires-in",
            "1h",
        ];
        assert!(Cli::try_parse_from(no_scope).is_err());
    }

    #[test]
    fn config_is_taken_before_or_after_the_action() {
        for args in [
            &["user", "list", "--config", "x.toml"][..],
            &["user", "--config", "x.toml", "list"],
            &["user", "list", "-c", "x.toml"],
            &["user", "disable", "--config", "x.toml", "u1"],
            &["user", "disable", "u1", "--config", "x.toml"],
            &["roles", "explain", "u1", "--config", "x.toml"],
            &["roles", "--config", "x.toml", "explain", "u1"],
            &["serve", "--config", "x.toml"],
        ] {
            assert_eq!(
                user_config(&parse(args)),
                std::path::Path::new("x.toml"),
                "{args:?}"
            );
        }
        assert_eq!(
            user_config(&parse(&["user", "list"])),
            std::path::Path::new("config/broker.toml")
        );
    }

    fn user_id(cli: &Cli) -> &str {
        match &cli.command {
            Command::User { action, .. } => match action {
                UserAction::Disable { id }
                | UserAction::Enable { id }
                | UserAction::SetPassword { id }
                | UserAction::GrantRole { id, .. }
                | UserAction::RevokeRole { id, .. }
                | UserAction::Roles { id }
                | UserAction::Audit { id } => id,
                other => panic!("no user id in {other:?}"),
            },
            Command::Roles {
                action: RolesAction::Explain { user_id, .. },
                ..
            } => user_id,
            other => panic!("no user id in {other:?}"),
        }
    }

    /// Ids are random base64url: one in 64 starts with '-', and must still be an id.
    #[test]
    fn user_ids_may_start_with_a_hyphen() {
        for id in ["-Ab_c", "-cAbc", "--Abc", "-"] {
            for args in [
                vec!["user", "disable", id, "--config", "x.toml"],
                vec!["user", "--config", "x.toml", "enable", id],
                vec!["user", "set-password", id, "-c", "x.toml"],
                vec!["user", "grant-role", id, "editor", "--client", "app"],
                vec!["user", "revoke-role", id, "editor"],
                vec!["user", "roles", id, "--config", "x.toml"],
                vec!["user", "audit", id],
                vec![
                    "roles", "explain", id, "--client", "app", "--config", "x.toml",
                ],
            ] {
                let cli = Cli::try_parse_from(std::iter::once("broker").chain(args.clone()))
                    .unwrap_or_else(|e| panic!("{args:?}: {e}"));
                assert_eq!(user_id(&cli), id, "{args:?}");
            }
        }
    }

    #[test]
    fn commands_without_a_config_refuse_one() {
        for args in [
            &["hash-password", "--config", "x.toml"][..],
            &["check-config", "a.toml", "--config", "x.toml"],
            &["plugin", "inspect", "p.so", "--config", "x.toml"],
        ] {
            let all = std::iter::once("broker").chain(args.iter().copied());
            assert!(Cli::try_parse_from(all).is_err(), "{args:?}");
        }
    }

    #[test]
    fn a_piped_password_is_one_line_without_its_ending() {
        let mut input = std::io::Cursor::new("s3cret pass\r\nnext line\n");
        assert_eq!(
            read_password_line(&mut input).unwrap().expose(),
            "s3cret pass"
        );
        let mut empty = std::io::Cursor::new("");
        assert_eq!(read_password_line(&mut empty).unwrap().expose(), "");
    }
}
