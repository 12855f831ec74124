//! Connect's transforms and predicates in a real worker, configured the way
//! Kafka Connect's docs write them: JSON `{"name", "config"}` files with
//! Connect's class names (`FileStreamSinkConnector`, `ReplaceField$Value`,
//! `ExtractField$Key`, ...) and `predicates.*`, run unchanged against the
//! Kafka from `tests/services/up`. The sink side checks predicates (records
//! they do not select skip the stage and keep their place) on schemaless and
//! `{schema, payload}` records; the source side checks `$Key` transforms and
//! headers in what lands in the topic; `validate` checks that every mistake
//! is reported with its key.

// One `json!` below holds every transform's config.
#![recursion_limit = "256"]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::kafka::*;
use common::*;
use rdkafka::message::{Headers, Message};
use serde_json::{json, Value};

fn write_json(dir: &std::path::Path, file: &str, v: &Value) {
    std::fs::write(
        dir.join(file),
        serde_json::to_string_pretty(v).expect("json"),
    )
    .expect("write");
}

fn stop(mut child: Child) {
    signal(&child, "-INT");
    assert!(
        child.wait().expect("wait").success(),
        "graceful stop failed"
    );
}

#[test]
fn a_connect_sink_config_with_predicates_runs_unchanged() {
    let dir = tempdir("smt-sink");
    let id = unique_id(&dir);
    let (orders, users) = (format!("{id}-orders"), format!("{id}-users"));
    create_topic(&orders, 1);
    create_topic(&users, 1);
    let pii = vec![("pii".to_string(), "1".to_string())];
    let rec = |key: &str, value: Option<Value>, headers: &[(String, String)]| Rec {
        partition: 0,
        key: Some(key.to_string()),
        value: value.map(|v| v.to_string()),
        timestamp: None,
        headers: headers.to_vec(),
    };
    let with_schema = json!({
        "schema": {"type":"struct","name":"shop.orders.Value","optional":false,"fields":[
            {"field":"id","type":"int32","optional":false},
            {"field":"qty","type":"int32","optional":true},
            {"field":"secret","type":"string","optional":true},
            {"field":"card","type":"string","optional":true}]},
        "payload": {"id":3,"qty":7,"secret":"s3","card":"4222"}
    });
    produce_records(
        &orders,
        &[
            rec(
                r#"{"id":1}"#,
                Some(json!({"id":1,"qty":5,"secret":"s1","card":"4111"})),
                &pii,
            ),
            rec(r#"{"id":2}"#, None, &[]),
            rec(r#"{"id":3}"#, Some(with_schema), &[]),
        ],
    );
    produce_records(
        &users,
        &[rec(
            r#"{"id":9}"#,
            Some(json!({"id":9,"name":"ann","card":"5500"})),
            &pii,
        )],
    );
    std::fs::write(
        dir.join("worker.yaml"),
        format!("bootstrap.servers: {}\n", bootstrap()),
    )
    .expect("worker.yaml");
    let t = "org.apache.kafka.connect.transforms";
    let p = "org.apache.kafka.connect.transforms.predicates";
    write_json(
        &dir,
        "sink.json",
        &json!({
            "name": format!("smt-sink-{id}"),
            "config": {
                "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
                "tasks.max": "1",
                "topics": format!("{orders},{users}"),
                "file": "out.jsonl",
                "transforms": "dropTombstones,mask,rename,route,tag,stampOthers",
                "transforms.dropTombstones.type": format!("{t}.Filter"),
                "transforms.dropTombstones.predicate": "isTombstone",
                "transforms.mask.type": format!("{t}.MaskField$Value"),
                "transforms.mask.fields": "card",
                "transforms.mask.predicate": "hasPii",
                "transforms.rename.type": format!("{t}.ReplaceField$Value"),
                "transforms.rename.exclude": "secret",
                "transforms.rename.renames": "qty:quantity",
                "transforms.rename.predicate": "isOrders",
                "transforms.route.type": format!("{t}.RegexRouter"),
                "transforms.route.regex": ".*-(orders|users)",
                "transforms.route.replacement": "shop_$1",
                "transforms.tag.type": format!("{t}.InsertField$Value"),
                "transforms.tag.topic.field": "topic",
                "transforms.tag.offset.field": "offset",
                "transforms.stampOthers.type": format!("{t}.InsertField$Value"),
                "transforms.stampOthers.static.field": "kind",
                "transforms.stampOthers.static.value": "other",
                "transforms.stampOthers.predicate": "isShopOrders",
                "transforms.stampOthers.negate": "true",
                "predicates": "isTombstone,hasPii,isOrders,isShopOrders",
                "predicates.isTombstone.type": format!("{p}.RecordIsTombstone"),
                "predicates.hasPii.type": format!("{p}.HasHeaderKey"),
                "predicates.hasPii.name": "pii",
                "predicates.isOrders.type": format!("{p}.TopicNameMatches"),
                "predicates.isOrders.pattern": ".*-orders",
                "predicates.isShopOrders.type": format!("{p}.TopicNameMatches"),
                "predicates.isShopOrders.pattern": "shop_orders"
            }
        }),
    );
    let child = spawn(
        &dir,
        &[
            "run",
            "--worker",
            "worker.yaml",
            "sink.json",
            "--progress",
            "0",
        ],
    );
    wait_for_lines(&dir.join("out.jsonl"), 3, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    stop(child);

    let text = std::fs::read_to_string(dir.join("out.jsonl")).expect("out");
    let mut by_id = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("json line");
        let id = v.get("payload").unwrap_or(&v)["id"].as_i64().expect("id");
        assert!(by_id.insert(id, v).is_none(), "record {id} twice:\n{text}");
    }
    assert_eq!(
        by_id.keys().copied().collect::<Vec<_>>(),
        [1, 3, 9],
        "the tombstone is filtered:\n{text}"
    );
    // Masked (pii header), renamed and trimmed (an orders topic), routed, tagged.
    assert_eq!(
        by_id[&1],
        json!({"id":1,"quantity":5,"card":"","topic":"shop_orders","offset":0})
    );
    // No pii header: not masked. Its schema follows every change.
    assert_eq!(
        by_id[&3],
        json!({
            "schema": {"type":"struct","name":"shop.orders.Value","optional":false,"fields":[
                {"field":"id","type":"int32","optional":false},
                {"field":"quantity","type":"int32","optional":true},
                {"field":"card","type":"string","optional":true},
                {"field":"topic","type":"string","optional":true},
                {"field":"offset","type":"int64","optional":true}]},
            "payload": {"id":3,"quantity":7,"card":"4222","topic":"shop_orders","offset":2}
        })
    );
    // Not an orders topic: not renamed; the negated predicate stamps it.
    assert_eq!(
        by_id[&9],
        json!({"id":9,"name":"ann","card":"","topic":"shop_users","offset":0,"kind":"other"})
    );
}

#[test]
fn key_transforms_and_headers_reach_the_topic() {
    let dir = tempdir("smt-source");
    let id = unique_id(&dir);
    let topic = format!("{id}-people");
    create_topic(&topic, 1);
    std::fs::write(
        dir.join("in.jsonl"),
        "{\"id\":1,\"region\":\"eu\",\"address\":{\"city\":\"Lyon\",\"zip\":\"69001\"}}\n\
         {\"id\":2,\"region\":\"us\",\"address\":{\"city\":\"Reno\",\"zip\":null}}\n",
    )
    .expect("input");
    std::fs::write(
        dir.join("worker.yaml"),
        format!("bootstrap.servers: {}\n", bootstrap()),
    )
    .expect("worker.yaml");
    let t = "org.apache.kafka.connect.transforms";
    write_json(
        &dir,
        "source.json",
        &json!({
            "name": format!("smt-source-{id}"),
            "config": {
                "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                "file": "in.jsonl",
                "topic": topic,
                "transforms": "key,keyId,keyText,region,flat,origin,hush",
                "transforms.key.type": format!("{t}.ValueToKey"),
                "transforms.key.fields": "id,region",
                "transforms.keyId.type": format!("{t}.ExtractField$Key"),
                "transforms.keyId.field": "id",
                "transforms.keyText.type": format!("{t}.Cast$Key"),
                "transforms.keyText.spec": "string",
                "transforms.region.type": format!("{t}.HeaderFrom$Value"),
                "transforms.region.fields": "region",
                "transforms.region.headers": "region",
                "transforms.region.operation": "move",
                "transforms.flat.type": format!("{t}.Flatten$Value"),
                "transforms.flat.delimiter": "_",
                "transforms.origin.type": format!("{t}.InsertHeader"),
                "transforms.origin.header": "origin",
                "transforms.origin.value.literal": "wharf",
                "transforms.hush.type": format!("{t}.DropHeaders"),
                "transforms.hush.headers": "nothing-here"
            }
        }),
    );
    let mut child = spawn(
        &dir,
        &[
            "run",
            "--worker",
            "worker.yaml",
            "source.json",
            "--progress",
            "0",
        ],
    );
    let start = std::time::Instant::now();
    let messages = loop {
        let m = read_topic(&topic);
        if m.len() >= 2 {
            break m;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the worker exited:\n{}",
            std::fs::read_to_string(dir.join("wharf.log")).unwrap_or_default()
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "only {} records",
            m.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    stop(child);
    assert_eq!(messages.len(), 2);
    let mut seen = Vec::new();
    for m in &messages {
        let key = std::str::from_utf8(m.key().expect("key"))
            .expect("utf8")
            .to_string();
        let value: Value = serde_json::from_slice(m.payload().expect("value")).expect("json");
        let headers: Vec<(String, String)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let v = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                        (h.key.to_string(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        seen.push((key, value, headers));
    }
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        seen,
        vec![
            (
                "\"1\"".to_string(),
                json!({"id":1,"address_city":"Lyon","address_zip":"69001"}),
                h(&[("region", "eu"), ("origin", "wharf")])
            ),
            (
                "\"2\"".to_string(),
                json!({"id":2,"address_city":"Reno","address_zip":null}),
                h(&[("region", "us"), ("origin", "wharf")])
            ),
        ]
    );
}

#[test]
fn mistakes_in_connect_configs_are_reported_by_key() {
    let dir = tempdir("smt-validate");
    let t = "org.apache.kafka.connect.transforms";
    let p = "org.apache.kafka.connect.transforms.predicates";
    let base = |extra: Value| {
        let mut config = json!({
            "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
            "topics": "t",
            "file": "out.jsonl",
        });
        for (k, v) in extra.as_object().expect("object") {
            config[k] = v.clone();
        }
        json!({"name": "v", "config": config})
    };
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "undefined-predicate",
            json!({"transforms":"m","transforms.m.type":format!("{t}.MaskField$Value"),
                   "transforms.m.fields":"a","transforms.m.predicate":"nope"}),
            vec!["key 'transforms.m.predicate'", "'nope'"],
        ),
        (
            "negate-alone",
            json!({"transforms":"m","transforms.m.type":format!("{t}.MaskField$Value"),
                   "transforms.m.fields":"a","transforms.m.negate":"true"}),
            vec!["key 'transforms.m.negate'"],
        ),
        (
            "bad-pattern",
            json!({"predicates":"p","predicates.p.type":format!("{p}.TopicNameMatches"),
                   "predicates.p.pattern":"("}),
            vec!["key 'predicates.p.pattern'"],
        ),
        (
            "no-header-name",
            json!({"predicates":"p","predicates.p.type":format!("{p}.HasHeaderKey")}),
            vec!["key 'predicates.p.name'", "required"],
        ),
        (
            "unknown-predicate",
            json!({"predicates":"p","predicates.p.type":"com.example.IsFriday"}),
            vec!["key 'predicates.p.type'", "com.example.IsFriday"],
        ),
        (
            "no-side",
            json!({"transforms":"r","transforms.r.type":format!("{t}.ReplaceField")}),
            vec!["key 'transforms.r.type'", "ReplaceField$Key or"],
        ),
        (
            "side-contradicted",
            json!({"transforms":"r","transforms.r.type":format!("{t}.ReplaceField$Key"),
                   "transforms.r.wharf.transform.side":"value"}),
            vec!["key 'transforms.r.wharf.transform.side'"],
        ),
        (
            "bad-renames",
            json!({"transforms":"r","transforms.r.type":format!("{t}.ReplaceField$Value"),
                   "transforms.r.renames":"a:b:c"}),
            vec!["key 'transforms.r.renames'"],
        ),
        (
            "reroute-without-regex",
            json!({"transforms":"r","transforms.r.type":"io.debezium.transforms.ByLogicalTableRouter",
                   "transforms.r.topic.replacement":"all"}),
            vec!["key 'transforms.r.topic.regex'", "required"],
        ),
        (
            "cast-spec",
            json!({"transforms":"c","transforms.c.type":format!("{t}.Cast$Key"),
                   "transforms.c.spec":"id:uuid"}),
            vec!["key 'transforms.c.spec'", "uuid"],
        ),
    ];
    for (name, extra, expect) in cases {
        let file = format!("{name}.json");
        write_json(&dir, &file, &base(extra));
        let out = wharf(&dir, &["validate", &file]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} should fail validation");
        for e in expect {
            assert!(stderr.contains(e), "{name}: stderr lacks '{e}':\n{stderr}");
        }
    }
    // Class names of connectors and of every transform and predicate validate.
    write_json(
        &dir,
        "good.json",
        &base(json!({
            "transforms": "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,q,u,v,w",
            "transforms.a.type": format!("{t}.Cast$Value"), "transforms.a.spec": "int32",
            "transforms.b.type": format!("{t}.DropHeaders"), "transforms.b.headers": "x",
            "transforms.c.type": format!("{t}.ExtractField$Key"), "transforms.c.field": "id",
            "transforms.d.type": format!("{t}.Filter"), "transforms.d.predicate": "tomb",
            "transforms.e.type": format!("{t}.Flatten$Value"),
            "transforms.f.type": format!("{t}.HeaderFrom$Key"), "transforms.f.fields": "a",
            "transforms.f.headers": "a", "transforms.f.operation": "copy",
            "transforms.g.type": format!("{t}.HoistField$Value"), "transforms.g.field": "v",
            "transforms.h.type": format!("{t}.InsertField$Key"), "transforms.h.topic.field": "t",
            "transforms.i.type": format!("{t}.InsertHeader"), "transforms.i.header": "h",
            "transforms.i.value.literal": "v",
            "transforms.j.type": format!("{t}.MaskField$Key"), "transforms.j.fields": "a",
            "transforms.k.type": format!("{t}.RegexRouter"), "transforms.k.regex": "(.*)",
            "transforms.k.replacement": "$1-x",
            "transforms.l.type": format!("{t}.ReplaceField$Key"), "transforms.l.include": "a",
            "transforms.m.type": format!("{t}.SetSchemaMetadata$Value"),
            "transforms.m.schema.name": "x",
            "transforms.n.type": format!("{t}.TimestampConverter$Value"),
            "transforms.n.target.type": "unix",
            "transforms.o.type": format!("{t}.TimestampRouter"),
            "transforms.q.type": format!("{t}.ValueToKey"), "transforms.q.fields": "id",
            "transforms.u.type": "io.debezium.transforms.ExtractNewRecordState",
            "transforms.v.type": "io.debezium.transforms.ByLogicalTableRouter",
            "transforms.v.topic.regex": "(.*)customers_shard(.*)",
            "transforms.v.topic.replacement": "$1customers_all_shards",
            "transforms.w.type": "io.debezium.transforms.outbox.EventRouter",
            "transforms.w.route.by.field": "aggregatetype",
            "transforms.u.predicate": "orders", "transforms.u.negate": "false",
            "predicates": "tomb,orders,pii",
            "predicates.tomb.type": format!("{p}.RecordIsTombstone"),
            "predicates.orders.type": format!("{p}.TopicNameMatches"),
            "predicates.orders.pattern": "shop\\..*",
            "predicates.pii.type": format!("{p}.HasHeaderKey"), "predicates.pii.name": "pii"
        })),
    );
    let out = wharf(&dir, &["validate", "good.json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(file-sink sink) is valid"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
