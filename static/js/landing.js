// The landing page: "Start" takes a session (a hot one, when held) and opens its page.
import { startSession } from "./api.js";

const button = document.getElementById("start");
const status = document.getElementById("start-status");

// How long to wait, as the at-capacity page words it (front/wording.py: wait).
const wait = (seconds) => (seconds <= 90 ? "a minute" : `${Math.round(seconds / 60)} minutes`);

async function start() {
  button.disabled = true;
  status.className = "status";
  status.textContent = "Creating your session…";
  try {
    const token = document.querySelector("#start-form [name=csrfmiddlewaretoken]").value;
    const session = await startSession(token);
    window.location.assign(session.url || `/p/${session.id}/`);
  } catch (error) {
    status.className = "status error";
    if (error.status === 429) {
      // At capacity or too many sessions from this address: say so, and when to retry.
      const why = error.code ? error.message : "pwd is at capacity right now.";
      status.textContent = `${why} Try again in ${wait(error.retryAfter || 60)}.`;
    } else {
      status.textContent = `Could not start a session: ${error.message}`;
    }
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
