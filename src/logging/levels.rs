//! The level filter (`log.level` / `RUST_LOG`), except that connection spans
//! always exist.
//!
//! The rate limit knows whose line an event is from the `peer` field of its
//! connection span. Those spans are INFO: at `log.level = "warn"` an
//! [`EnvFilter`] alone would not create them, and every warning a client causes
//! would count as nobody's, unlimited. So spans with a `peer` field are always
//! enabled (which also shows the address on those warnings, as at `info`), and
//! everything else is as the filter says.

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::peer_limit::is_peer_span;

/// An [`EnvFilter`] that lets connection spans through.
#[derive(Debug)]
pub struct Levels(EnvFilter);

impl Levels {
    /// Filters with `filter`, except for connection spans.
    pub fn new(filter: EnvFilter) -> Self {
        Self(filter)
    }
}

impl<S> Layer<S> for Levels
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_peer_span(meta) {
            Interest::always()
        } else {
            Layer::<S>::register_callsite(&self.0, meta)
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, cx: Context<'_, S>) -> bool {
        is_peer_span(meta) || Layer::<S>::enabled(&self.0, meta, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // Connection spans are INFO. No higher: a TRACE hint would make every
        // `log` record of the dependencies (rustls, per TLS record) ask the filter.
        Layer::<S>::max_level_hint(&self.0).map(|level| level.max(LevelFilter::INFO))
    }

    fn event_enabled(&self, event: &Event<'_>, cx: Context<'_, S>) -> bool {
        Layer::<S>::event_enabled(&self.0, event, cx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        Layer::<S>::on_new_span(&self.0, attrs, id, cx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, cx: Context<'_, S>) {
        Layer::<S>::on_record(&self.0, id, values, cx);
    }

    fn on_enter(&self, id: &Id, cx: Context<'_, S>) {
        Layer::<S>::on_enter(&self.0, id, cx);
    }

    fn on_exit(&self, id: &Id, cx: Context<'_, S>) {
        Layer::<S>::on_exit(&self.0, id, cx);
    }

    fn on_close(&self, id: Id, cx: Context<'_, S>) {
        Layer::<S>::on_close(&self.0, id, cx);
    }
}
