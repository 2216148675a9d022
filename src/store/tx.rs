//! The one way the store reaches its backends.
//!
//! Every query runs on a [`Conn`]: a pooled connection, or one inside a transaction, of either
//! backend. [`on_conn!`] compiles a body once per backend (the SQL is the same text; only the
//! connection type differs), or takes one body per backend where the dialects differ. Generated
//! statements get their placeholders from [`Conn::dialect`]. Nothing else in `store/` matches on
//! the backend.
//!
//! - [`Store::read`]: a pooled reader connection, no transaction (one statement, or several that
//!   need not agree with each other). SQLite's readers are a separate pool from its one writer.
//! - [`Store::read_tx`]: a transaction on a reader, for several reads that must see one state.
//! - [`Store::write`]: a transaction that may write. SQLite: its single writer connection with
//!   `BEGIN IMMEDIATE`, so a transaction never meets "database is locked" halfway through.
//!   PostgreSQL: a pooled connection; writers that must be ordered lock a row first.
//!
//! A transaction is committed with [`Conn::commit`]; dropped without it, it rolls back.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Sqlite, Transaction};

use super::{Backend, Store, StoreError};

/// A connection of one backend: pooled, or inside a transaction.
pub(crate) enum Handle<DB: sqlx::Database> {
    Pooled(PoolConnection<DB>),
    Tx(Transaction<'static, DB>),
}

impl<DB: sqlx::Database> Deref for Handle<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &Self::Target {
        match self {
            Self::Pooled(c) => c,
            Self::Tx(t) => t,
        }
    }
}

impl<DB: sqlx::Database> DerefMut for Handle<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Self::Pooled(c) => c,
            Self::Tx(t) => t,
        }
    }
}

impl<DB: sqlx::Database> Handle<DB> {
    async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Pooled(_) => Ok(()),
            Self::Tx(t) => t.commit().await,
        }
    }
}

/// A connection to the store's database (see the module docs).
pub(crate) enum Conn {
    Sqlite(Handle<Sqlite>),
    Postgres(Handle<Postgres>),
}

/// Runs a body on a [`Conn`]'s connection.
///
/// `on_conn!(conn, |c| body)` compiles `body` once per backend with `c` bound to
/// `&mut SqliteConnection` or `&mut PgConnection`; `on_conn!(conn, sqlite: |c| a, postgres: |c| b)`
/// runs `a` or `b`, for statements whose text differs between the dialects.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        $crate::store::tx::on_conn!($conn, sqlite: |$c| $body, postgres: |$c| $body)
    };
    ($conn:expr, sqlite: |$s:ident| $sqlite:expr, postgres: |$p:ident| $postgres:expr $(,)?) => {
        match $conn {
            $crate::store::tx::Conn::Sqlite(handle) => {
                let $s: &mut sqlx::SqliteConnection = &mut **handle;
                $sqlite
            }
            $crate::store::tx::Conn::Postgres(handle) => {
                let $p: &mut sqlx::PgConnection = &mut **handle;
                $postgres
            }
        }
    };
}

pub(crate) use on_conn;

/// Runs one statement on a [`Conn`] with these parameters, in order; the rows it affected.
///
/// `execute!(&mut conn, "UPDATE t SET a = $2 WHERE id = $1", id, a)`
macro_rules! execute {
    ($conn:expr, $sql:expr $(, $bind:expr)* $(,)?) => {
        $crate::store::tx::on_conn!($conn, |c| {
            sqlx::query($sql)$(.bind($bind))*.execute(c).await?.rows_affected()
        })
    };
}

pub(crate) use execute;

impl Conn {
    /// Commits the transaction (nothing to do for a pooled connection).
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(h) => h.commit().await?,
            Self::Postgres(h) => h.commit().await?,
        }
        Ok(())
    }

    /// How generated statements write their placeholders on this connection.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }
}

/// The placeholder syntax of generated statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Anonymous `?`: SQLite's lookup of numbered names is linear per parameter (binding an
    /// 8,000-parameter statement with `$N` names was quadratic and took 80 % of ingest time).
    Sqlite,
    /// `$1, $2, …`.
    Postgres,
}

impl Dialect {
    /// The placeholder of the `n`th parameter (from 1).
    pub(crate) fn placeholder(self, n: usize) -> String {
        let mut sql = String::new();
        self.push_placeholder(&mut sql, n);
        sql
    }

    /// Appends the placeholder of the `n`th parameter (from 1) to `sql`.
    fn push_placeholder(self, sql: &mut String, n: usize) {
        match self {
            Self::Sqlite => sql.push('?'),
            Self::Postgres => {
                use std::fmt::Write as _;
                // Writing into a String cannot fail.
                let _ = write!(sql, "${n}");
            }
        }
    }

    /// `n` parameters for an `IN (…)` list, from the first.
    pub(crate) fn in_list(self, n: usize) -> String {
        let mut sql = String::with_capacity(n * 4);
        for i in 1..=n {
            if i > 1 {
                sql.push_str(", ");
            }
            self.push_placeholder(&mut sql, i);
        }
        sql
    }

    /// `(…), (…)` for `rows` rows of `cols` parameters, from the first: written into one string
    /// (a bulk statement has thousands of parameters, and building each placeholder as its own
    /// string showed in SQLite ingest's profile).
    pub(crate) fn values_list(self, rows: usize, cols: usize) -> String {
        let mut sql = String::with_capacity(rows * (cols * 4 + 4));
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 1..=cols {
                if c > 1 {
                    sql.push_str(", ");
                }
                self.push_placeholder(&mut sql, r * cols + c);
            }
            sql.push(')');
        }
        sql
    }
}

/// The columns of a row of either backend, read by index: for statements whose rows are decoded
/// by hand (wide joins, columns read as borrowed text).
pub(crate) trait Columns {
    fn text(&self, i: usize) -> Result<&str, StoreError>;
    fn optional_text(&self, i: usize) -> Result<Option<&str>, StoreError>;
    fn number(&self, i: usize) -> Result<i64, StoreError>;
    fn optional_number(&self, i: usize) -> Result<Option<i64>, StoreError>;
}

impl<R: sqlx::Row> Columns for R
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> &'a str: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    fn text(&self, i: usize) -> Result<&str, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn optional_text(&self, i: usize) -> Result<Option<&str>, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn number(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn optional_number(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(i)?)
    }
}

impl Store {
    /// A pooled reader connection (no transaction).
    pub(crate) async fn read(&self) -> Result<Conn, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite { read, .. } => Conn::Sqlite(Handle::Pooled(read.acquire().await?)),
            Backend::Postgres(pool) => Conn::Postgres(Handle::Pooled(pool.acquire().await?)),
        })
    }

    /// A read transaction: several reads that see one state.
    pub(crate) async fn read_tx(&self) -> Result<Conn, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite { read, .. } => Conn::Sqlite(Handle::Tx(read.begin().await?)),
            Backend::Postgres(pool) => Conn::Postgres(Handle::Tx(pool.begin().await?)),
        })
    }

    /// A transaction that may write (SQLite: takes the write lock at once).
    pub(crate) async fn write(&self) -> Result<Conn, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite {
                write, checkpoints, ..
            } => {
                let tx = write.begin_with("BEGIN IMMEDIATE").await?;
                checkpoints.wrote();
                Conn::Sqlite(Handle::Tx(tx))
            }
            Backend::Postgres(pool) => Conn::Postgres(Handle::Tx(pool.begin().await?)),
        })
    }

    /// The writer outside any transaction, for statements that must not run in one (`VACUUM`,
    /// migrations that manage their own).
    pub(crate) async fn write_unscoped(&self) -> Result<Conn, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite { write, .. } => Conn::Sqlite(Handle::Pooled(write.acquire().await?)),
            Backend::Postgres(pool) => Conn::Postgres(Handle::Pooled(pool.acquire().await?)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Dialect;

    #[test]
    fn placeholders_number_every_value() {
        assert_eq!(Dialect::Sqlite.values_list(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(Dialect::Sqlite.values_list(1, 1), "(?)");
        assert_eq!(Dialect::Postgres.values_list(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(Dialect::Postgres.in_list(3), "$1, $2, $3");
        assert_eq!(Dialect::Sqlite.in_list(2), "?, ?");
        assert_eq!(Dialect::Postgres.placeholder(7), "$7");
    }
}
