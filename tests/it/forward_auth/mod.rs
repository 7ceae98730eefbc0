//! Forward-auth mode (`forward_auth_url`): the endpoints asked directly
//! (`checks`), and Debian's nginx and Caddy in front of the Verify app,
//! asking jetbridge for each request (`fronts`); the Gateway API ExternalAuth
//! filter's HTTP form (`external_auth`).

mod checks;
mod external_auth;
mod fronts;
