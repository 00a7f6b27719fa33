//! What an operator can ask of a server, and in which states each request may start: one
//! [`Command`] shape for the API and the CLI, and one table ([`Command::allowed_in`])
//! instead of state checks spread over the engine.

use warden_store::ServerState;

use crate::operate::Action;

/// One operator request on one server, with what that request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start it (restoring first if archived); done when it answers.
    Wake,
    /// Stop it now; `force` stops it even with players on it.
    Sleep { force: bool },
    /// Archive a sleeping server's world (verified before the node copy goes).
    Archive,
    /// Bring an archived world back to the node; the server stays asleep.
    Restore,
    /// Warm-swap restart, optionally on another image (Docker servers).
    Restart { image: Option<String> },
    /// Move the server to appliance `to`.
    Migrate { to: String },
    /// Back up its world now (online through RCON while it runs).
    Backup,
    /// Replace a sleeping server's world with backup `backup` (`latest`: the newest), or
    /// the next older one that verifies.
    RestoreBackup { backup: String },
}

impl Command {
    /// Builds a command from an action and its options, or says which option is wrong.
    pub fn new(
        action: Action,
        image: Option<String>,
        to: Option<String>,
        force: bool,
        backup: Option<String>,
    ) -> Result<Command, &'static str> {
        if let Some(image) = &image {
            if action != Action::Restart
                || image.is_empty()
                || image.chars().any(char::is_whitespace)
            {
                return Err("image: a non-empty image name, and only for restart");
            }
        }
        if to.is_some() != (action == Action::Migrate) {
            return Err("to: the target appliance, required for migrate and only for it");
        }
        if let Some(b) = &backup {
            if action != Action::Restore || !valid_backup_name(b) {
                return Err("backup: a backup id (see `warden backups ID`) or `latest`, and only for restore");
            }
        }
        Ok(match (action, to) {
            (Action::Wake, _) => Command::Wake,
            (Action::Sleep, _) => Command::Sleep { force },
            (Action::Archive, _) => Command::Archive,
            (Action::Restore, _) => match backup {
                Some(backup) => Command::RestoreBackup { backup },
                None => Command::Restore,
            },
            (Action::Restart, _) => Command::Restart { image },
            (Action::Migrate, Some(to)) => Command::Migrate { to },
            (Action::Migrate, None) => {
                return Err("to: the target appliance, required for migrate and only for it")
            }
            (Action::Backup, _) => Command::Backup,
        })
    }

    /// Which kind of action this is.
    pub fn action(&self) -> Action {
        match self {
            Command::Wake => Action::Wake,
            Command::Sleep { .. } => Action::Sleep,
            Command::Archive => Action::Archive,
            Command::Restore => Action::Restore,
            Command::Restart { .. } => Action::Restart,
            Command::Migrate { .. } => Action::Migrate,
            Command::Backup => Action::Backup,
            Command::RestoreBackup { .. } => Action::Restore,
        }
    }

    /// The state table: `Ok` if the command may start on a server in `state` (`local`:
    /// this appliance runs it), or why not.
    pub fn allowed_in(&self, state: ServerState, local: bool) -> Result<(), NotNow> {
        use ServerState::*;
        match (self, state) {
            (Command::Wake, _) => Ok(()),
            (Command::Sleep { .. }, Active) => Ok(()),
            (Command::Sleep { .. }, _) => Err(NotNow::State("")),
            (Command::Archive, Sleeping) => Ok(()),
            (Command::Archive, _) => {
                Err(NotNow::State(" (only a sleeping server can be archived)"))
            }
            (Command::Restore, Archived) => Ok(()),
            (Command::Restore, _) => {
                Err(NotNow::State(" (only an archived server can be restored)"))
            }
            (Command::Restart { .. }, Active) => Ok(()),
            (Command::Restart { .. }, _) => {
                Err(NotNow::State(" (only a running server can be restarted)"))
            }
            (Command::Migrate { .. }, Active) if !local => Err(NotNow::Elsewhere),
            (Command::Migrate { .. }, Active | Sleeping | Archived) => Ok(()),
            (Command::Migrate { .. }, _) => Err(NotNow::State("")),
            (Command::Backup, Active) if !local => Err(NotNow::Elsewhere),
            (Command::Backup, Active | Sleeping) => Ok(()),
            (Command::Backup, _) => Err(NotNow::State(
                " (only a running or sleeping server can be backed up)",
            )),
            (Command::RestoreBackup { .. }, Sleeping) => Ok(()),
            (Command::RestoreBackup { .. }, _) => Err(NotNow::State(
                " (a backup is restored only into a sleeping server: sleep it first)",
            )),
        }
    }
}

/// A backup id as `warden backups` lists them (`20260102T030405Z`, maybe `-N`), or
/// `latest`: checked here so no other text reaches the storage layer.
fn valid_backup_name(b: &str) -> bool {
    b == "latest" || warden_archive::backup::id_unix_ms(b).is_some()
}

/// Why a command may not start in the server's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotNow {
    /// Not in this state; the text adds what would be allowed.
    State(&'static str),
    /// The server runs on another appliance, which must be asked instead.
    Elsewhere,
}

impl NotNow {
    /// The operator's message: "cannot ACTION ID while it is STATE…".
    pub fn message(self, action: Action, id: &str, state: ServerState) -> String {
        match self {
            NotNow::State(hint) => {
                format!("cannot {} {id} while it is {state}{hint}", action.as_str())
            }
            NotNow::Elsewhere => {
                format!(
                    "{id} runs on another appliance; ask that one to {} it",
                    action.as_str()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_belong_to_their_action() {
        assert!(Command::new(Action::Sleep, Some("img".into()), None, false, None).is_err());
        assert!(Command::new(Action::Restart, Some("a b".into()), None, false, None).is_err());
        assert!(Command::new(Action::Migrate, None, None, false, None).is_err());
        assert!(Command::new(Action::Wake, None, Some("b".into()), false, None).is_err());
        assert_eq!(
            Command::new(Action::Migrate, None, Some("b".into()), false, None),
            Ok(Command::Migrate { to: "b".into() })
        );
        assert_eq!(
            Command::new(Action::Sleep, None, None, true, None),
            Ok(Command::Sleep { force: true })
        );
        let b = |s: &str| Some(s.to_string());
        assert_eq!(
            Command::new(Action::Restore, None, None, false, b("20260102T030405Z")),
            Ok(Command::RestoreBackup {
                backup: "20260102T030405Z".into()
            })
        );
        assert_eq!(
            Command::new(Action::Restore, None, None, false, None),
            Ok(Command::Restore)
        );
        for bad in ["../x", "", "2026"] {
            assert!(Command::new(Action::Restore, None, None, false, b(bad)).is_err());
        }
        assert!(Command::new(Action::Wake, None, None, false, b("latest")).is_err());
    }

    #[test]
    fn the_table_allows_each_command_only_in_its_states() {
        use ServerState::*;
        let all = ServerState::ALL;
        let allowed = |c: Command, local: bool| -> Vec<ServerState> {
            all.iter()
                .copied()
                .filter(|s| c.allowed_in(*s, local).is_ok())
                .collect()
        };
        assert_eq!(allowed(Command::Wake, true), all.to_vec());
        assert_eq!(allowed(Command::Sleep { force: false }, true), vec![Active]);
        assert_eq!(allowed(Command::Archive, true), vec![Sleeping]);
        assert_eq!(allowed(Command::Restore, true), vec![Archived]);
        assert_eq!(
            allowed(Command::Restart { image: None }, true),
            vec![Active]
        );
        let to = || Command::Migrate { to: "b".into() };
        assert_eq!(allowed(to(), true), vec![Active, Sleeping, Archived]);
        assert_eq!(allowed(to(), false), vec![Sleeping, Archived]);
        assert_eq!(allowed(Command::Backup, true), vec![Active, Sleeping]);
        assert_eq!(allowed(Command::Backup, false), vec![Sleeping]);
        let restore = || Command::RestoreBackup {
            backup: "latest".into(),
        };
        assert_eq!(allowed(restore(), true), vec![Sleeping]);
    }
}
