//! Who is calling: password hashing ([`password`]), the bearer-token extractor ([`AuthUser`]) and
//! the failed-login throttle ([`throttle::LoginThrottle`]).

pub mod extractor;
pub mod password;
pub mod throttle;

pub use extractor::AuthUser;
