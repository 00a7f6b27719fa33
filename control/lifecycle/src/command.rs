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
}

impl Command {
    /// Builds a command from an action and its options, or says which option is wrong.
    pub fn new(
        action: Action,
        image: Option<String>,
        to: Option<String>,
        force: bool,
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
        Ok(match (action, to) {
            (Action::Wake, _) => Command::Wake,
            (Action::Sleep, _) => Command::Sleep { force },
            (Action::Archive, _) => Command::Archive,
            (Action::Restore, _) => Command::Restore,
            (Action::Restart, _) => Command::Restart { image },
            (Action::Migrate, Some(to)) => Command::Migrate { to },
            (Action::Migrate, None) => {
                return Err("to: the target appliance, required for migrate and only for it")
            }
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
        }
    }

    /// The state table: `Ok` if the command may start on a server in `state` (`local`:
    /// this appliance runs it), or why not.
    pub fn allowed_in(&self, state: ServerState, local: bool) -> Result<(), NotNow> {
        use ServerState::*;
        match (self.action(), state) {
            (Action::Wake, _) => Ok(()),
            (Action::Sleep, Active) => Ok(()),
            (Action::Sleep, _) => Err(NotNow::State("")),
            (Action::Archive, Sleeping) => Ok(()),
            (Action::Archive, _) => Err(NotNow::State(" (only a sleeping server can be archived)")),
            (Action::Restore, Archived) => Ok(()),
            (Action::Restore, _) => {
                Err(NotNow::State(" (only an archived server can be restored)"))
            }
            (Action::Restart, Active) => Ok(()),
            (Action::Restart, _) => Err(NotNow::State(" (only a running server can be restarted)")),
            (Action::Migrate, Active) if !local => Err(NotNow::Elsewhere),
            (Action::Migrate, Active | Sleeping | Archived) => Ok(()),
            (Action::Migrate, _) => Err(NotNow::State("")),
        }
    }
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
        assert!(Command::new(Action::Sleep, Some("img".into()), None, false).is_err());
        assert!(Command::new(Action::Restart, Some("a b".into()), None, false).is_err());
        assert!(Command::new(Action::Migrate, None, None, false).is_err());
        assert!(Command::new(Action::Wake, None, Some("b".into()), false).is_err());
        assert_eq!(
            Command::new(Action::Migrate, None, Some("b".into()), false),
            Ok(Command::Migrate { to: "b".into() })
        );
        assert_eq!(
            Command::new(Action::Sleep, None, None, true),
            Ok(Command::Sleep { force: true })
        );
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
    }
}
