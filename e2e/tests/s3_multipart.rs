//! Multipart uploads on a real S3-compatible server (s3s-fs). Its own test binary: it sets the
//! process's AWS environment, which no other test may read concurrently.

use weir_e2e::s3::S3Server;

#[test]
fn large_objects_go_up_in_parts_and_read_back_intact() {
    let server = S3Server::start();
    for (k, v) in server.env() {
        std::env::set_var(k, v);
    }
    let storage = weir_runtime::storage::S3Storage::open(&weir_crds::S3Location {
        bucket: server.bucket.clone(),
        prefix: "multipart".into(),
        endpoint: Some(server.endpoint()),
        region: Some(weir_e2e::s3::REGION.into()),
        path_style: true,
    })
    .unwrap();
    use weir_runtime::storage::CheckpointStorage;
    let big: Vec<u8> = (0..40u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let before = storage.stats();
    storage.write("dir/big", &big).unwrap();
    let io = storage.stats().since(&before);
    assert_eq!(io.requests, 7, "create + 5 parts + complete");
    assert_eq!(io.bytes_written, big.len() as u64);
    assert_eq!(
        storage.read("dir/big").unwrap().as_deref(),
        Some(big.as_slice())
    );
    assert_eq!(
        server.objects("multipart/dir"),
        vec!["multipart/dir/big".to_string()]
    );
}
