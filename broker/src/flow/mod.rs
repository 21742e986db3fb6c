//! The authorization transaction, without handlers: the validated request an app made
//! ([`AuthorizationRequest`]), the login it waits on ([`PendingLogin`], whose purpose
//! is signing in for a client or linking an identity to the signed-in account), the
//! answers that go back to the client ([`AuthorizationReply`], [`OAuthError`]), and
//! [`issue_code`], which ends every successful sign-in; and the device grant's user
//! codes and approval ([`device`]); and the step-up to a second factor of a
//! signed-in person whose app needs one ([`step_up`]).

mod admission;
mod code;
pub mod device;
mod error;
mod pending;
mod request;
mod step_up;

pub use admission::admit_start;
pub use code::issue_code;
pub use device::{DeviceIntent, approve_device};
pub use error::{AuthorizationReply, OAuthError};
pub use pending::{
    AccountIntent, EXPIRED, FlowError, PendingLogin, Purpose, SecondFactor, Started,
};
pub use request::{AuthorizationRequest, Prompt};
pub use step_up::{set_up_mfa_page, step_up};
