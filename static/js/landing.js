// The landing page: "Start" creates a session and opens its page.
const button = document.getElementById("start");
const status = document.getElementById("start-status");

async function start() {
  button.disabled = true;
  status.className = "status";
  status.textContent = "Creating your session…";
  try {
    const response = await fetch("/api/sessions/", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: "{}",
    });
    const body = await response.json().catch(() => ({}));
    if (response.status === 429) {
      // At capacity or too many sessions from this address: say so, and when to retry.
      const seconds = Number(response.headers.get("Retry-After")) || 60;
      const wait = seconds <= 90 ? "a minute" : `${Math.round(seconds / 60)} minutes`;
      const why = body.error?.message || "pwd is at capacity right now.";
      const error = new Error(`${why} Try again in ${wait}.`);
      error.busy = true;
      throw error;
    }
    if (!response.ok) {
      throw new Error(body.error?.message || `the server answered ${response.status}`);
    }
    window.location.assign(body.url || `/p/${body.id}/`);
  } catch (error) {
    status.className = "status error";
    status.textContent = error.busy ? error.message : `Could not start a session: ${error.message}`;
    button.disabled = false;
    button.focus();
  }
}

// The form posts to /start/ when scripts do not run; with them, the API is used and
// errors show here without leaving the page.
document.getElementById("start-form").addEventListener("submit", (event) => {
  event.preventDefault();
  start();
});
