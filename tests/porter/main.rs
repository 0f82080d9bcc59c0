//! porter's integration tests: one module per documented area, one binary (one link
//! step on a 2-core machine). Every test starts its own porter and backends on
//! ephemeral 127.0.0.1 ports.

// The helpers are `pub` for the sibling test modules; a test binary has no public surface.
#![allow(unreachable_pub)]

// Not every test area uses every helper.
#[allow(dead_code)]
mod harness;

mod access_log;
mod access_log_binary;
mod acme;
mod acme_client;
mod acme_renewal;
mod admin;
mod admin_dashboard;
mod auth_basic;
mod auth_forward;
mod balancers;
mod balancing;
mod blame;
mod blame_server;
mod cli;
mod compress;
mod compress_streaming;
mod config;
mod deploy_files;
mod deploy_image;
mod docs;
mod faults;
mod forwarding;
mod grafana;
mod grpc;
mod hostile;
mod hostile_targets;
mod hot_upgrade;
mod http3;
mod lifecycle;
mod limits;
mod ops;
mod pebble;
mod policy_access;
mod policy_actions;
mod policy_config;
mod policy_headers;
mod policy_http3;
mod pooling;
mod post_quantum;
mod proxy_protocol;
mod rate_limit;
mod raw_http;
mod redirect;
mod reload;
mod request_head;
mod resilience;
mod response_fields;
mod routing;
mod sticky;
mod tls;
mod tls_client;
mod tls_edge;
mod tls_reload;
mod tls_stream;
mod upgrade;
mod upstream_h2;
mod upstream_tls;
mod watch;
