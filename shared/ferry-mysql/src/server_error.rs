//! MySQL and MariaDB server error codes, classified once for every caller (the binlog reader,
//! connections, sync targets): what a code means for a task decides whether retrying can help.

/// What a server error means for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerErrorKind {
    /// 1236: the binlog the request needs is purged, or the position is unknown.
    BinlogUnavailable,
    /// 1044, 1045, 1142, 1143, 1227: the user is refused, or lacks a privilege.
    AccessDenied,
    /// 1049: the database does not exist.
    UnknownDatabase,
    /// 1048, 1264, 1265, 1292, 1366, 1406, 1452: a column cannot hold a value.
    ValueRejected,
    /// 1054, 1060, 1064, 1091, 1146: a table or column is not what the statement expects.
    SchemaMismatch,
    /// Anything else (deadlocks, lock waits, a read-only server in failover, lost
    /// connections): transient.
    Other,
}

impl ServerErrorKind {
    /// The kind of server error `code`.
    pub fn of(code: u16) -> Self {
        match code {
            1236 => Self::BinlogUnavailable,
            1044 | 1045 | 1142 | 1143 | 1227 => Self::AccessDenied,
            1049 => Self::UnknownDatabase,
            1048 | 1264 | 1265 | 1292 | 1366 | 1406 | 1452 => Self::ValueRejected,
            1054 | 1060 | 1064 | 1091 | 1146 => Self::SchemaMismatch,
            _ => Self::Other,
        }
    }

    /// Whether retrying the same request cannot help.
    pub fn is_definite(self) -> bool {
        !matches!(self, Self::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_once() {
        assert_eq!(
            ServerErrorKind::of(1236),
            ServerErrorKind::BinlogUnavailable
        );
        assert_eq!(ServerErrorKind::of(1045), ServerErrorKind::AccessDenied);
        assert_eq!(ServerErrorKind::of(1227), ServerErrorKind::AccessDenied);
        assert_eq!(ServerErrorKind::of(1366), ServerErrorKind::ValueRejected);
        assert_eq!(ServerErrorKind::of(1146), ServerErrorKind::SchemaMismatch);
        assert!(
            !ServerErrorKind::of(1213).is_definite(),
            "a deadlock is retried"
        );
        assert!(
            !ServerErrorKind::of(2013).is_definite(),
            "a lost connection is retried"
        );
    }
}
