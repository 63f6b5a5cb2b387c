// The join page: a name, then a seat; while seats are being made, it waits and asks again.
import { call } from "./api.js";

const form = document.getElementById("join-form");
const button = document.getElementById("join");
const nameInput = document.getElementById("name");
const status = document.getElementById("join-status");
const problem = document.getElementById("join-error");
const code = form.dataset.code;
// Asking again for a seat still being made: at most this often, this many times.
const RETRY_MIN = 2;
const RETRIES = 120;

let retries = 0;
let retryTimer = null;

function say(text, error = "") {
  status.textContent = text;
  problem.textContent = error;
  problem.hidden = !error;
}

async function join() {
  clearTimeout(retryTimer);
  button.disabled = true;
  say("Getting your seat…");
  try {
    const seat = await call("POST", `/api/workshops/join/${encodeURIComponent(code)}/`, {
      name: nameInput.value,
    });
    say(`Seat ${seat.seat} is yours; opening it…`);
    location.assign(seat.url || `/p/${seat.id}/`);
  } catch (error) {
    if (error.status === 503 && error.code === "seats_not_ready" && retries < RETRIES) {
      retries += 1;
      const wait = Math.max(RETRY_MIN, error.retryAfter || 5);
      say(`Your seat is being made; this page tries again in ${wait} s.`);
      retryTimer = setTimeout(join, wait * 1000);
      return;
    }
    const messages = {
      workshop_full: "Every seat of this workshop is taken; ask your instructor.",
      workshop_ended: "This workshop has ended.",
      workshop_not_found: "No such workshop: check the code or the link with your instructor.",
    };
    say("", messages[error.code] || error.message);
    button.disabled = false;
    nameInput.focus();
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  retries = 0;
  join();
});
