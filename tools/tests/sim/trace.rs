//! ckptd's own log events, captured per simulation thread: the harness reads the
//! decisions daemons announce (who leads the directory in which term, who becomes the
//! primary of which checkpoint in which term) to name the known bug behind a failure.
//! Only a diagnosis: no invariant depends on them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One captured event.
#[derive(Debug)]
pub(crate) struct Logged {
    pub(crate) at: Duration,
    /// The turmoil host it came from (`10.0.0.<node>`).
    pub(crate) host: Option<String>,
    pub(crate) message: String,
    pub(crate) fields: BTreeMap<&'static str, String>,
}

impl Logged {
    /// The node id of the host.
    pub(crate) fn node(&self) -> Option<u32> {
        self.host.as_deref()?.rsplit('.').next()?.parse().ok()
    }

    pub(crate) fn u64(&self, field: &str) -> Option<u64> {
        self.fields.get(field)?.parse().ok()
    }
}

thread_local! {
    static EVENTS: RefCell<Vec<Logged>> = const { RefCell::new(Vec::new()) };
}

/// The events captured on this thread since the last call.
pub(crate) fn take() -> Vec<Logged> {
    EVENTS.with(|e| std::mem::take(&mut *e.borrow_mut()))
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: BTreeMap<&'static str, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields.insert(field.name(), value.to_owned());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.insert(field.name(), format!("{value:?}"));
        }
    }
}

/// turmoil's `node` span: which host runs.
struct Host(String);

struct Capture;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "node" {
            return;
        }
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let (Some(name), Some(span)) = (f.fields.remove("name"), ctx.span(id)) {
            span.extensions_mut().insert(Host(name));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("ckpt_tools") || *meta.level() > Level::INFO {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let host = ctx.event_scope(event).and_then(|scope| {
            scope
                .from_root()
                .find_map(|s| s.extensions().get::<Host>().map(|h| h.0.clone()))
        });
        let at = turmoil::sim_elapsed().unwrap_or_default();
        EVENTS.with(|e| {
            e.borrow_mut().push(Logged {
                at,
                host,
                message: f.message,
                fields: f.fields,
            });
        });
    }
}

/// Log lines carry the simulated time; turmoil's `node` span names the host.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> fmt::Result {
        match turmoil::sim_elapsed() {
            Some(t) => write!(w, "{:>9.3}s", t.as_secs_f64()),
            None => write!(w, "{:>10}", "-"),
        }
    }
}

/// Captures ckptd's events on this thread while the guard lives; with `RUST_LOG` set,
/// also prints them (`RUST_LOG=ckpt_tools=debug,turmoil=info`) with simulated time.
pub(crate) fn capture() -> tracing::subscriber::DefaultGuard {
    use tracing_subscriber::Layer as _;
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("ckpt_tools", Level::INFO)
        .with_target("turmoil", Level::INFO);
    let print = std::env::var_os("RUST_LOG").map(|_| {
        tracing_subscriber::fmt::layer()
            .with_timer(SimTime)
            .with_ansi(false)
            .with_test_writer()
            .with_filter(tracing_subscriber::EnvFilter::from_default_env())
    });
    let subscriber = tracing_subscriber::registry()
        .with(Capture.with_filter(filter))
        .with(print);
    tracing::subscriber::set_default(subscriber)
}
