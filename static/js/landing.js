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
    if (!response.ok) {
      throw new Error(body.error?.message || `the server answered ${response.status}`);
    }
    window.location.assign(body.url || `/p/${body.id}/`);
  } catch (error) {
    status.className = "status error";
    status.textContent = `Could not start a session: ${error.message}`;
    button.disabled = false;
    button.focus();
  }
}

button.addEventListener("click", start);
