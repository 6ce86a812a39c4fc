//! TEMPORARY, until main's `TestApp::create_web_client` (tests/api/helpers/operator.rs) is
//! merged: the same signature so that the browser sign-in tests compile; dropped at the merge.

use super::*;

impl TestApp {
    pub async fn create_web_client(
        &self,
        public: bool,
        redirect_uris: &[&str],
        post_logout_redirect_uris: &[&str],
    ) -> RegisteredClient {
        panic!(
            "create_web_client({public}, {redirect_uris:?}, {post_logout_redirect_uris:?}) \
             comes with main's browser sign-in"
        )
    }
}
