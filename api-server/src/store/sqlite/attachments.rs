//! Uploads' records on SQLite: the shared queries ([`crate::store::attachments::queries`]).
//! Writes are serialized (one writer), so linking an upload in a message's transaction and a
//! garbage claim run wholly one after the other: a linked upload is never collected.

use super::rows::AttachmentRow;
use super::schema::{attachments, members, messages};
use super::Conn;
use crate::store::rows::attach_refusal;
use crate::store::StoreResult;
use chrono::{DateTime, Utc};
use diesel::dsl::{exists, sql};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use shared::ids::UserId;

crate::store::attachments::queries!(Conn, "COALESCE(SUM(bytes), 0)");
