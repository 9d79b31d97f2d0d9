//! The library through etcd's gRPC proxy (`etcd grpc-proxy`), the way a
//! large fleet runs it: the proxy is the clients' only endpoint.

mod common;

use common::*;
use os_lively::Service;

#[test]
fn registers_and_reads_through_the_grpc_proxy() {
    let cluster = Cluster::start(3);
    let proxy = GrpcProxy::start(&cluster.endpoints());
    let ns = namespace("grpcproxy");
    let client = connect(&[proxy.endpoint()], &ns, 5);
    let uuid = client.update(&Service::new("nova", "h1")).unwrap();
    assert!(client.is_up(&uuid).unwrap());
    assert!(proxy.metric("etcd_server_has_leader").is_some());
}
