//! The Pushgateway: the text format, legacy names, `PUT` to the group in one request (a
//! `PUT` replaces the group, so it cannot come in parts); no stale markers (the group stays
//! until it is replaced or deleted).

use hyper::Method;

use super::{refusal, Exchange, Job, Request, Verdict, What};
use crate::encode::{text, Format, Negotiated};
use crate::push::client::Answer;
use crate::PushError;

/// See the module documentation.
pub(crate) struct Pushgateway;

impl Exchange for Pushgateway {
    type Room = ();
    type Sent = ();

    fn encode(
        &self,
        _: &mut (),
        job: &Job,
        send: &mut dyn FnMut(Request<()>) -> bool,
    ) -> Result<(), PushError> {
        if job.what == What::Values {
            let body = job.source.render(Negotiated::of(Format::Text));
            send(Request {
                method: Method::PUT,
                headers: &[("content-type", text::prometheus::CONTENT_TYPE)],
                body: body.into(),
                sent: (),
            });
        }
        Ok(())
    }

    fn judge(&self, answer: &Answer, _: &()) -> Verdict {
        if answer.status.is_success() {
            Verdict::Done
        } else {
            refusal(answer, |status| status.is_server_error())
        }
    }
}
