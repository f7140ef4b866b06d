//! The small plain-text pages vestibule answers with itself. Static bytes: no allocation per error.

pub fn body(status: u16) -> &'static [u8] {
    match status {
        400 => b"400 Bad Request\n\nvestibule could not understand this request.\n",
        403 => b"403 Forbidden\n\nThis address may not use this part of the site.\n",
        404 => b"404 Not Found\n\nThis server does not serve the requested site name.\n",
        413 => b"413 Content Too Large\n\nThe request body is larger than this site accepts.\n",
        421 => b"421 Misdirected Request\n\nThis server does not serve the requested site name.\nCheck the address, or ask the administrator to add it to a vhost's server_names.\n",
        502 => b"502 Bad Gateway\n\nvestibule could not get a response from the application server behind this site.\nIt may be stopped or restarting; try again in a moment.\n",
        503 => b"503 Service Unavailable\n\nNo application server is available for this site right now.\n",
        504 => b"504 Gateway Timeout\n\nThe application server behind this site did not answer in time.\n",
        _ => b"vestibule could not complete this request.\n",
    }
}
