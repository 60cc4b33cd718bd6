// Helpers of the scripts that drive the demo: a bearer token from its /api/token (of
// `lifetime` seconds, else the demo's default), and
// an outcome that records a value or the error's text (never throws).

export async function token(base, username, lifetime = undefined) {
    const response = await fetch(`${base}/api/token`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username, password: `${username}-password`, lifetime }),
    });
    if (response.status !== 200) {
        throw new Error(`token for ${username}: HTTP ${response.status}`);
    }
    return (await response.json()).access_token;
}

export async function outcome(call) {
    try {
        return { value: (await call()) ?? null };
    } catch (error) {
        return { error: String(error?.message ?? error) };
    }
}
