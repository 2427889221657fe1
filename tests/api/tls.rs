//! Optional TLS and mutual TLS, with certificates the test makes itself.
use std::{path::PathBuf, time::Duration};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::support::{TestApp, TestDatabase, app::test_settings, wait};

struct Pki {
    dir: tempfile::TempDir,
    ca: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    /// A CA, a server certificate for "localhost" and a client certificate.
    fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf("localhost");
        let (client_cert, client_key) = leaf("hera-client");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), server_cert).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key).unwrap();
        Self {
            ca: ca.pem(),
            client_cert,
            client_key,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

async fn tls_app(pki: &Pki, db: &TestDatabase, mutual: bool) -> TestApp {
    let mut settings = test_settings(db.options());
    settings.tls.tls_cert = Some(pki.path("server.pem"));
    settings.tls.tls_key = Some(pki.path("server.key"));
    if mutual {
        settings.tls.tls_client_ca = Some(pki.path("ca.pem"));
    }
    TestApp::spawn_with(settings).await
}

async fn health_over(channel: Channel) -> Result<ServingStatus, tonic::Status> {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(response.into_inner().status())
}

async fn tls_channel(
    app: &TestApp,
    pki: &Pki,
    with_client_cert: bool,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .domain_name("localhost")
        .ca_certificate(Certificate::from_pem(&pki.ca));
    if with_client_cert {
        tls = tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    }
    Channel::from_shared(format!("https://{}", app.addr))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

async fn wait_serving_over_tls(app: &TestApp, pki: &Pki) {
    wait::until("SERVING over TLS", Duration::from_secs(15), || async {
        let channel = tls_channel(app, pki, true).await.ok()?;
        (health_over(channel).await.ok()? == ServingStatus::Serving).then_some(())
    })
    .await;
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca_and_refuses_plaintext() {
    let pki = Pki::new();
    let db = TestDatabase::create().await;
    let app = tls_app(&pki, &db, false).await;
    wait_serving_over_tls(&app, &pki).await;

    let anonymous = tls_channel(&app, &pki, false)
        .await
        .expect("TLS without a client certificate");
    assert_eq!(
        health_over(anonymous).await.unwrap(),
        ServingStatus::Serving
    );

    let plaintext = Channel::from_shared(app.endpoint())
        .unwrap()
        .connect()
        .await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(channel) => health_over(channel).await.is_err(),
    };
    assert!(
        refused,
        "a plaintext client gets no answer from a TLS server"
    );
    app.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_signed_by_the_client_ca() {
    let pki = Pki::new();
    let db = TestDatabase::create().await;
    let app = tls_app(&pki, &db, true).await;
    wait_serving_over_tls(&app, &pki).await;

    let without_certificate = match tls_channel(&app, &pki, false).await {
        Err(_) => true,
        Ok(channel) => health_over(channel).await.is_err(),
    };
    assert!(
        without_certificate,
        "a client without a certificate is refused under mutual TLS"
    );
    app.stop().await;
}
