//! Forward-auth mode (`forward_auth_url`): the endpoints asked directly
//! (`checks`), and Debian's nginx and Caddy in front of the Verify app,
//! asking jetbridge for each request (`fronts`).

mod checks;
mod fronts;
