//! gRPC through porter, end to end: a tonic client speaking HTTP/2 over TLS to
//! porter, porter speaking h2c (`http2: true`) to a tonic server. Unary and
//! server-streaming calls, with the status carried in trailers intact, and
//! error statuses (in headers, and in trailers after messages) passed through.
//!
//! The service is written by hand over tonic's generic `Grpc` client and
//! server with prost messages (no protoc, no build script).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::harness::*;
use crate::tls_client::{tls_config, tls_connect, TLS12_AND_13};

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

struct SayHello;

impl tonic::server::UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = std::future::Ready<Result<Response<HelloReply>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let via = request.metadata().get("via").map(|v| v.to_str().unwrap_or("").to_string()).unwrap_or_default();
        let name = request.into_inner().name;
        std::future::ready(if name == "nobody" {
            Err(Status::not_found("no such person: nobody"))
        } else {
            Ok(Response::new(HelloReply { message: format!("hello {name} (via {via})") }))
        })
    }
}

type ReplyStream = futures_util::stream::Iter<std::vec::IntoIter<Result<HelloReply, Status>>>;

/// `count` replies, then OK — or, for `count` 0, three replies then ABORTED in the trailers.
struct Count;

impl tonic::server::ServerStreamingService<HelloRequest> for Count {
    type Response = HelloReply;
    type ResponseStream = ReplyStream;
    type Future = std::future::Ready<Result<Response<ReplyStream>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let HelloRequest { name, count } = request.into_inner();
        let mut items: Vec<Result<HelloReply, Status>> =
            (1..=count.max(3)).map(|i| Ok(HelloReply { message: format!("{name} {i}") })).collect();
        if count == 0 {
            items.push(Err(Status::aborted("stopped after three")));
        }
        std::future::ready(Ok(Response::new(futures_util::stream::iter(items))))
    }
}

async fn route(request: http::Request<Incoming>) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
    Ok(match request.uri().path() {
        "/test.Greeter/SayHello" => grpc.unary(SayHello, request).await,
        "/test.Greeter/Count" => grpc.server_streaming(Count, request).await,
        _ => Status::unimplemented("no such method").into_http(),
    })
}

/// A tonic server over hyper's HTTP/2 (h2c) server on 127.0.0.1.
async fn grpc_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(route);
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A gRPC channel: one HTTP/2 connection over TLS to porter, as a tower service.
#[derive(Clone)]
struct Channel(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

async fn client(p: &TestPorter) -> tonic::client::Grpc<Channel> {
    let addr = p.https.unwrap();
    let tls = tls_connect(addr, "localhost", tls_config(&TLS12_AND_13, &[b"h2"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let origin: http::Uri = format!("https://localhost:{}", addr.port()).parse().unwrap();
    tonic::client::Grpc::with_origin(Channel(sender), origin)
}

async fn porter_for_grpc() -> TestPorter {
    let server = grpc_server().await;
    let yaml = format!(
        "{}http:\n  redirect: false\nupstreams:\n  grpc:\n    http2: true\n    servers:\n      - url: \"http://{server}\"\nroutes:\n  - upstream: grpc\n",
        listen_block()
    );
    TestPorter::start(&yaml).await
}

async fn say_hello(grpc: &mut tonic::client::Grpc<Channel>, name: &str) -> Result<Response<HelloReply>, Status> {
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/test.Greeter/SayHello");
    let request = Request::new(HelloRequest { name: name.into(), count: 0 });
    grpc.unary(request, path, ProstCodec::<HelloRequest, HelloReply>::default()).await
}

#[tokio::test]
async fn grpc_unary_and_its_error_status_pass_through() {
    let p = porter_for_grpc().await;
    let mut grpc = client(&p).await;
    let reply = say_hello(&mut grpc, "porter").await.unwrap();
    // porter's Via reached the server as metadata; grpc-status 0 came back in the trailers.
    assert_eq!(reply.into_inner().message, "hello porter (via 2.0 porter)");

    let status = say_hello(&mut grpc, "nobody").await.unwrap_err();
    assert_eq!((status.code(), status.message()), (tonic::Code::NotFound, "no such person: nobody"));

    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/test.Greeter/Nope");
    let request = Request::new(HelloRequest::default());
    let status = grpc.unary(request, path, ProstCodec::<HelloRequest, HelloReply>::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    p.stop().await;
}

#[tokio::test]
async fn grpc_server_streaming_keeps_messages_and_trailers() {
    let p = porter_for_grpc().await;
    let mut grpc = client(&p).await;
    let count = |name: &str, count: u32| Request::new(HelloRequest { name: name.into(), count });
    let path = || http::uri::PathAndQuery::from_static("/test.Greeter/Count");
    let codec = ProstCodec::<HelloRequest, HelloReply>::default;

    grpc.ready().await.unwrap();
    let mut stream = grpc.server_streaming(count("n", 5), path(), codec()).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(reply) = stream.message().await.unwrap() {
        seen.push(reply.message);
    }
    assert_eq!(seen, ["n 1", "n 2", "n 3", "n 4", "n 5"]);
    // The trailers (grpc-status 0) arrived: without them tonic reports an error above.
    assert!(stream.trailers().await.unwrap().is_some_and(|t| t.get("grpc-status").is_none_or(|s| s == "0")));

    // Three messages, then ABORTED in the trailers: the status after the data is intact.
    grpc.ready().await.unwrap();
    let stream = grpc.server_streaming(count("m", 0), path(), codec()).await.unwrap().into_inner();
    let results: Vec<Result<HelloReply, Status>> = stream.collect().await;
    assert_eq!(results.len(), 4, "{results:?}");
    assert!(results[..3].iter().all(Result::is_ok));
    let status = results[3].as_ref().unwrap_err();
    assert_eq!((status.code(), status.message()), (tonic::Code::Aborted, "stopped after three"));
    p.stop().await;
}
