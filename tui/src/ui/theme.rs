//! Styles, in one place, so `NO_COLOR` can strip every colour at once.
//!
//! With colours off, only modifiers remain (bold, dim, reversed, underlined), and
//! each distinction the colours make is also made by a glyph or a modifier.

use ratatui::style::{Color, Modifier, Style};

/// The styles of one frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Theme {
    no_color: bool,
}

impl Theme {
    /// A theme; `no_color` strips all colours.
    pub(crate) fn new(no_color: bool) -> Theme {
        Theme { no_color }
    }

    fn paint(&self, style: Style) -> Style {
        if self.no_color {
            let mut style = style;
            style.fg = None;
            style.bg = None;
            style
        } else {
            style
        }
    }

    /// Secondary text: times, previews, hints.
    pub(crate) fn dim(&self) -> Style {
        if self.no_color { Style::new().add_modifier(Modifier::DIM) } else { Style::new().fg(Color::DarkGray) }
    }

    /// Pane borders.
    pub(crate) fn border(&self) -> Style {
        self.paint(Style::new().fg(Color::DarkGray))
    }

    /// Pane borders of the pane with the keyboard focus (the message pane).
    pub(crate) fn border_focus(&self) -> Style {
        self.paint(Style::new().fg(Color::Cyan))
    }

    /// Pane titles.
    pub(crate) fn title(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// The focused entry of the conversation list.
    pub(crate) fn selected(&self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new().bg(Color::Indexed(236)).add_modifier(Modifier::BOLD)
        }
    }

    /// The bar marking the focused entry.
    pub(crate) fn accent(&self) -> Style {
        self.paint(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD))
    }

    /// Unread counts.
    pub(crate) fn badge(&self) -> Style {
        self.paint(Style::new().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD))
    }

    /// The header's mark for a verified contact.
    pub(crate) fn verified(&self) -> Style {
        self.paint(Style::new().fg(Color::Green))
    }

    /// The warning for a contact whose key changed.
    pub(crate) fn key_warning(&self) -> Style {
        self.paint(Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD))
    }

    /// The online dot.
    pub(crate) fn online(&self) -> Style {
        self.paint(Style::new().fg(Color::Green))
    }

    /// Section headers in the list.
    pub(crate) fn header(&self) -> Style {
        self.paint(Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD))
    }

    /// Our own name in messages.
    pub(crate) fn me(&self) -> Style {
        self.paint(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD))
    }

    /// A contact's name in messages.
    pub(crate) fn them(&self) -> Style {
        self.paint(Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD))
    }

    /// Delivery marks short of "read".
    pub(crate) fn mark(&self) -> Style {
        self.dim()
    }

    /// The "read" mark: same glyph as delivered, set apart by weight and colour.
    pub(crate) fn mark_read(&self) -> Style {
        self.paint(Style::new().fg(Color::LightBlue).add_modifier(Modifier::BOLD))
    }

    /// The "failed" mark.
    pub(crate) fn mark_failed(&self) -> Style {
        self.paint(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
    }

    /// A message its author deleted for everyone: `deleted` in place of its text.
    pub(crate) fn deleted(&self) -> Style {
        self.dim().add_modifier(Modifier::ITALIC)
    }

    /// Our own reactions under a message, set apart from the others' (which are
    /// plain): also without colours, by weight and underline.
    pub(crate) fn reaction_ours(&self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new().fg(Color::White).bg(Color::Indexed(24)).add_modifier(Modifier::BOLD)
        }
    }

    /// Day separators.
    pub(crate) fn separator(&self) -> Style {
        self.dim()
    }

    /// The "new messages" line.
    pub(crate) fn new_marker(&self) -> Style {
        self.paint(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
    }

    /// Notices such as "contact request pending".
    pub(crate) fn notice(&self) -> Style {
        self.paint(Style::new().fg(Color::Yellow).add_modifier(Modifier::ITALIC))
    }

    /// The status bar background.
    pub(crate) fn status_bar(&self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new().fg(Color::White).bg(Color::Indexed(236))
        }
    }

    /// An error in the status bar.
    pub(crate) fn error(&self) -> Style {
        self.paint(Style::new().fg(Color::LightRed).add_modifier(Modifier::BOLD))
    }

    /// Matched characters in the quick switcher.
    pub(crate) fn matched(&self) -> Style {
        self.paint(Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD | Modifier::UNDERLINED))
    }

    /// The words a search matched, in its results: a highlighter's mark, bold and
    /// underlined without colours (so also on a selected, reversed row).
    pub(crate) fn found(&self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD)
        }
    }

    /// The QR code: forced light-on-dark so it scans whatever the terminal's theme.
    pub(crate) fn qr(&self) -> Style {
        self.paint(Style::new().fg(Color::White).bg(Color::Black))
    }

    /// A mention of us in a message (`@name`): stands out even without colours.
    pub(crate) fn mention_me(&self) -> Style {
        self.paint(Style::new().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD | Modifier::UNDERLINED))
    }

    /// A mention of someone else: marked lightly.
    pub(crate) fn mention(&self) -> Style {
        self.paint(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD))
    }

    /// Key names in the help.
    pub(crate) fn key(&self) -> Style {
        self.paint(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD))
    }

    /// The call bar: set apart from the status bar below it.
    pub(crate) fn call_bar(&self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::White).bg(Color::Indexed(22))
        }
    }

    /// "muted" in the call bar.
    pub(crate) fn muted(&self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        } else {
            Style::new().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD)
        }
    }

    /// Someone speaking in the call or room bar: their marker and name.
    pub(crate) fn speaking(&self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new().fg(Color::LightYellow).add_modifier(Modifier::BOLD)
        }
    }

    /// The lit cells of a level meter (the unlit ones use another glyph).
    pub(crate) fn meter(&self) -> Style {
        self.paint(Style::new().fg(Color::LightGreen))
    }
}
