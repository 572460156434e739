//! Statements of the binlog, as text: the schema history's DDL parser
//! (`ferry_mysql::ddl::apply_statement`), what a statement is about
//! (`ferry_mysql::statement::subject`) and the tables a `TRUNCATE` empties. Any text is a
//! change to the catalog or none, never a panic.
#![no_main]

use ferry_domain::change::ObjectName;
use ferry_domain::schema::{ColumnDef, SchemaCatalog, SchemaEntry, TableDef};
use libfuzzer_sys::fuzz_target;

fn catalog() -> SchemaCatalog {
    let col = |name: &str, t: &str| ColumnDef {
        name: name.into(),
        column_type: t.into(),
        nullable: true,
        charset: None,
        members: Vec::new(),
        collation: None,
    };
    let mut c = SchemaCatalog::new();
    c.apply(&SchemaEntry::Table {
        name: ObjectName {
            database: "shop".into(),
            table: "orders".into(),
        },
        def: Some(TableDef {
            columns: vec![
                col("id", "int"),
                col("note", "varchar(20)"),
                col("e", "enum('a','B')"),
            ],
            primary_key: vec!["id".into()],
            collation: None,
        }),
    });
    c
}

fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    let mut c = catalog();
    let _ = ferry_mysql::ddl::apply_statement(&mut c, Some("shop"), &sql);
    let _ = ferry_mysql::ddl::apply_statement(&mut c, None, &sql);
    let _ = ferry_mysql::statement::subject(Some("shop"), &sql);
    let _ = ferry_mysql::ddl::truncated_tables(Some("shop"), &sql);
});
