//! Host-side bindings for the three worlds of `wit/wharf.wit`. The `types`
//! and `host` interfaces are generated once (under `source`) and shared.

pub mod source {
    wasmtime::component::bindgen!({
        world: "source",
        path: "../wit",
        exports: { default: async },
        imports: {
            "wharf:connector/host.sleep-millis": async,
            "wharf:connector/s3": async,
            "wharf:connector/postgres.query": async,
            "wharf:connector/postgres.slot-create": async,
            "wharf:connector/postgres.snapshot-begin": async,
            "wharf:connector/postgres.snapshot-end": async,
            "wharf:connector/postgres.stream-start": async,
            "wharf:connector/postgres.stream-read": async,
        },
    });
}

pub mod sink {
    wasmtime::component::bindgen!({
        world: "sink",
        path: "../wit",
        exports: { default: async },
        imports: {
            "wharf:connector/elasticsearch.request": async,
            "wharf:connector/elasticsearch.bulk-wait": async,
        },
        with: {
            "wharf:connector/types": super::source::wharf::connector::types,
            "wharf:connector/host": super::source::wharf::connector::host,
            "wharf:connector/s3": super::source::wharf::connector::s3,
        },
    });
}

pub mod transform {
    wasmtime::component::bindgen!({
        world: "transform",
        path: "../wit",
        exports: { default: async },
        with: {
            "wharf:connector/types": super::source::wharf::connector::types,
            "wharf:connector/host": super::source::wharf::connector::host,
        },
    });
}

pub use sink::wharf::connector::elasticsearch;
pub use source::wharf::connector::host;
pub use source::wharf::connector::postgres;
pub use source::wharf::connector::s3;
pub use source::wharf::connector::types;
