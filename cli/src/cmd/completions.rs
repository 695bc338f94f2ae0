//! `kith completions SHELL`: clap's completion script for the commands and flags,
//! plus (bash and fish) contact and group names where a command takes one. The
//! names come from `kith complete-names` at the moment of completion, so they follow
//! the contact list without regenerating the script.

use clap::CommandFactory as _;
use clap_complete::Shell;
use kith_p2p::control::Request;
use kith_p2p::views::{ContactView, GroupView};

use super::print;
use crate::args::{Cli, Global};
use crate::failure::Result;
use crate::output;

/// Commands whose first argument is a contact or group (`group …` ones: their first
/// two, the group and the member).
const TAKES_A_NAME: &str = "send history read accept reject block unblock remove rename";

/// bash: after clap's completion, a word in a name's position completes to names.
const BASH_NAMES: &str = r#"
_kith_with_names() {
    _kith "$@"
    local cur="${COMP_WORDS[COMP_CWORD]}"
    [[ "$cur" == -* ]] && return 0
    local takes=0
    if [[ $COMP_CWORD -eq 2 && " __TAKES__ " == *" ${COMP_WORDS[1]} "* ]]; then
        takes=1
    elif [[ "${COMP_WORDS[1]}" == group && ( $COMP_CWORD -eq 3 || $COMP_CWORD -eq 4 ) ]]; then
        takes=1
    fi
    if [[ $takes -eq 1 ]]; then
        local IFS=$'\n'
        COMPREPLY=( $(compgen -W "$(kith complete-names 2>/dev/null)" -- "$cur") )
    fi
}
complete -F _kith_with_names -o bashdefault -o default kith
"#;

/// fish: names after the commands that take one.
const FISH_NAMES: &str = r#"
complete -c kith -n "__fish_seen_subcommand_from __TAKES__ group" -f -a "(kith complete-names 2>/dev/null)"
"#;

/// Prints the script for `shell`.
pub(crate) fn print(shell: Shell) -> Result {
    clap_complete::generate(shell, &mut Cli::command(), "kith", &mut std::io::stdout());
    let extra = match shell {
        Shell::Bash => BASH_NAMES,
        Shell::Fish => FISH_NAMES,
        _ => return Ok(()),
    };
    output::line(extra.replace("__TAKES__", TAKES_A_NAME).trim_end())
}

/// Contact aliases (or names) and group names, one per line; nothing when the home
/// cannot be read (completion must never print errors into a prompt).
pub(crate) fn names(global: &Global) -> Result {
    let Ok(home) = super::home(global) else { return Ok(()) };
    let contacts: Vec<ContactView> =
        super::net::call(&home, Request::Contacts { state: None }).and_then(print::view).unwrap_or_default();
    let groups: Vec<GroupView> = super::net::call(&home, Request::Groups {}).and_then(print::view).unwrap_or_default();
    let names = contacts.iter().map(|c| c.label().to_owned()).chain(groups.into_iter().map(|g| g.name));
    for name in names.filter(|n| !n.contains('\n')) {
        output::line(name)?;
    }
    Ok(())
}
