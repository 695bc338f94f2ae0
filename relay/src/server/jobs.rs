//! The disk jobs of one request-response service (mailbox, group log) on tokio's
//! blocking pool, bounded and tracked for the event loop.
//!
//! A job runs a service's blocking store work and yields the response; the loop
//! then sends it on the request's channel. At most `max` jobs run at once: beyond
//! that [`Jobs::spawn`] gives the request back, and the service answers it at once
//! (as rate limited), so a flood never queues unbounded work or tasks. One periodic
//! expiry sweep per service runs at a time, as a job without a reply. Responses
//! handed to the swarm but not yet written are remembered, so a graceful shutdown can
//! wait for them ([`Jobs::is_settled`]).

use std::collections::HashSet;

use libp2p::PeerId;
use libp2p::request_response::{self, InboundRequestId, ResponseChannel};
use prometheus_client::metrics::gauge::Gauge;
use tokio::task::{Id, JoinError, JoinSet};

/// The retry hint sent with requests refused because every job slot is busy.
const BUSY_RETRY_AFTER_MS: u64 = 250;

/// The refusal sent when every job slot of a service is busy.
pub(crate) fn busy() -> kith_p2p::mailbox::Refusal {
    kith_p2p::mailbox::Refusal::RateLimited {
        retry_after_ms: BUSY_RETRY_AFTER_MS,
    }
}

/// What a service makes of a request.
#[derive(Debug)]
pub(crate) enum Action<R, J> {
    /// Send this response now.
    Respond(R),
    /// Run this job on the blocking pool and send its result (boxed: a job is much
    /// larger than an answer).
    Job(Box<J>),
}

/// A request-response service of the relay as the event loop drives it: a cheap
/// decision on the loop, disk work as a job.
pub(crate) trait Service {
    /// What it is asked.
    type Request;
    /// What it answers.
    type Response: Send + 'static;
    /// Its disk work.
    type Job: Send + 'static;

    /// Decides what to do with `request` from the authenticated `peer`; never blocks.
    fn handle(&mut self, peer: &PeerId, request: Self::Request) -> Action<Self::Response, Self::Job>;

    /// Runs a job (blocks on disk I/O: the blocking pool calls it).
    fn run(job: Self::Job) -> Self::Response;

    /// The answer when every job slot is taken (counted in the metrics).
    fn busy(&self) -> Self::Response;
}

/// Where a request's answer goes.
pub(crate) type Reply<R> = (InboundRequestId, ResponseChannel<R>);

/// What a finished job yields: the answer and, for a request, where to send it.
pub(crate) type Output<R> = (Option<Reply<R>>, R);

/// The jobs of one service.
pub(crate) struct Jobs<R> {
    set: JoinSet<Output<R>>,
    max: usize,
    /// The expiry sweep in flight, if any.
    expiry: Option<Id>,
    /// Responses handed to the swarm and not yet written.
    unsent: HashSet<InboundRequestId>,
    /// The service's name, for logs.
    service: &'static str,
    /// Jobs in flight, as exported (beside the `max_jobs` limit).
    in_flight: Gauge,
}

impl<R: Send + 'static> Jobs<R> {
    /// No jobs yet; at most `max` at once, their number kept in `in_flight`.
    pub(crate) fn new(max: usize, service: &'static str, in_flight: Gauge) -> Jobs<R> {
        Jobs {
            set: JoinSet::new(),
            max,
            expiry: None,
            unsent: HashSet::new(),
            service,
            in_flight,
        }
    }

    fn count(&self) {
        self.in_flight
            .set(i64::try_from(self.set.len()).unwrap_or(i64::MAX));
    }

    /// Jobs in flight.
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether no job is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Whether no job is in flight and every response has been written (or failed).
    pub(crate) fn is_settled(&self) -> bool {
        self.set.is_empty() && self.unsent.is_empty()
    }

    /// Responses handed to the swarm and not yet written.
    pub(crate) fn unsent(&self) -> usize {
        self.unsent.len()
    }

    /// Runs `job` on the blocking pool for the request `reply`; gives `reply` back
    /// if `max` jobs are already running.
    pub(crate) fn spawn(
        &mut self,
        reply: Reply<R>,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<(), Reply<R>> {
        if self.set.len() >= self.max {
            return Err(reply);
        }
        self.set.spawn_blocking(move || (Some(reply), job()));
        self.count();
        Ok(())
    }

    /// Runs the expiry sweep `job` unless one is running or `max` jobs are.
    pub(crate) fn spawn_expiry(&mut self, job: impl FnOnce() -> R + Send + 'static) {
        if self.expiry.is_some() || self.set.len() >= self.max {
            return;
        }
        let handle = self.set.spawn_blocking(move || (None, job()));
        self.expiry = Some(handle.id());
        self.count();
    }

    /// The next finished job. Cancel-safe (as [`JoinSet::join_next_with_id`]);
    /// pending forever while none is in flight, so guard it with
    /// [`Jobs::is_empty`] in a `select!`.
    pub(crate) async fn join_next(&mut self) -> Option<Result<(Id, Output<R>), JoinError>> {
        self.set.join_next_with_id().await
    }

    /// Settles a finished job; returns the answer to send and where, if any.
    pub(crate) fn finished(
        &mut self,
        done: Result<(Id, Output<R>), JoinError>,
    ) -> Option<(Reply<R>, R)> {
        // `join_next` took the job out of the set.
        self.count();
        match done {
            Ok((id, (reply, response))) => {
                if self.expiry == Some(id) {
                    self.expiry = None;
                }
                reply.map(|reply| (reply, response))
            }
            Err(e) => {
                if self.expiry == Some(e.id()) {
                    self.expiry = None;
                }
                // The request's channel went down with the job: the client sees the
                // request fail and retries.
                tracing::error!(error = %e, service = self.service, "job failed");
                None
            }
        }
    }

    /// Notes a response handed to the swarm.
    pub(crate) fn handed_over(&mut self, request: InboundRequestId) {
        self.unsent.insert(request);
    }

    /// Notes a response written, or its request failed.
    pub(crate) fn settled(&mut self, request: &InboundRequestId) {
        self.unsent.remove(request);
    }

    /// Handles one event of `service`'s request-response `behaviour`: answers a
    /// request at once or as a job (or drops it while shutting down, when not
    /// `accepting`: the client sees it fail and retries), and tracks answers until
    /// they are written.
    pub(crate) fn on_event<S, C>(
        &mut self,
        service: &mut S,
        behaviour: &mut request_response::Behaviour<C>,
        accepting: bool,
        event: request_response::Event<S::Request, R>,
    ) where
        S: Service<Response = R>,
        C: request_response::Codec<Request = S::Request, Response = R> + Clone + Send + 'static,
    {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request_id,
                        request,
                        channel,
                    },
                ..
            } => {
                if !accepting {
                    tracing::debug!(%peer, service = self.service, "request dropped during shutdown");
                    return;
                }
                match service.handle(&peer, request) {
                    Action::Respond(response) => self.respond(behaviour, (request_id, channel), response),
                    Action::Job(job) => {
                        if let Err(reply) = self.spawn((request_id, channel), move || S::run(*job)) {
                            self.respond(behaviour, reply, service.busy());
                        }
                    }
                }
            }
            request_response::Event::Message { peer, .. } => {
                tracing::debug!(%peer, service = self.service, "unexpected response ignored");
            }
            request_response::Event::ResponseSent { request_id, .. } => self.settled(&request_id),
            request_response::Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                // Includes requests the codec refused to decode (garbage, oversized
                // frames): the stream is dropped, the relay goes on.
                self.settled(&request_id);
                tracing::debug!(%peer, %error, service = self.service, "request failed");
            }
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, service = self.service, "outbound failure");
            }
        }
    }

    /// Settles a finished job and sends its answer, if it has one.
    pub(crate) fn on_done<C>(
        &mut self,
        behaviour: &mut request_response::Behaviour<C>,
        done: Result<(Id, Output<R>), JoinError>,
    ) where
        C: request_response::Codec<Response = R> + Clone + Send + 'static,
    {
        if let Some((reply, response)) = self.finished(done) {
            self.respond(behaviour, reply, response);
        }
    }

    /// Hands `response` to the swarm for `reply`.
    fn respond<C>(&mut self, behaviour: &mut request_response::Behaviour<C>, (request_id, channel): Reply<R>, response: R)
    where
        C: request_response::Codec<Response = R> + Clone + Send + 'static,
    {
        if behaviour.send_response(channel, response).is_ok() {
            self.handed_over(request_id);
        } else {
            tracing::debug!(service = self.service, "requester went away before the answer");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The exported number of jobs in flight rises when one starts and falls when
    /// the loop takes its result, so `kith_relay_mailbox_jobs` can be read against
    /// its limit.
    #[tokio::test]
    async fn the_in_flight_gauge_follows_the_jobs() {
        let gauge = Gauge::default();
        let mut jobs: Jobs<u8> = Jobs::new(1, "test", gauge.clone());
        let (release, wait) = std::sync::mpsc::channel::<()>();
        jobs.spawn_expiry(move || {
            let _ = wait.recv();
            7
        });
        assert_eq!((jobs.len(), gauge.get()), (1, 1));
        release.send(()).unwrap();
        let done = tokio::time::timeout(Duration::from_secs(30), jobs.join_next())
            .await
            .unwrap()
            .unwrap();
        // An expiry sweep has nobody to answer.
        assert!(jobs.finished(done).is_none());
        assert_eq!((jobs.len(), gauge.get()), (0, 0));
    }
}
