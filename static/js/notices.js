// The session page of a workshop seat: the workshop's title, the instructor's broadcast
// message, "the instructor is typing / has taken over", and the workshop's new end.
// It hears the session's events from session.js as "pwd:event" DOM events.

const data = JSON.parse(document.getElementById("workshop-data").textContent);
const $ = (id) => document.getElementById(id);

// "The instructor is typing" stays this long after the last instructor.typing.
const TYPING_SHOWN = 4000;

const takenOver = new Set(); // nodes the instructor holds
let typingNode = null;
let typingTimer = null;

function renderMessage(text) {
  $("workshop-message-text").textContent = text;
  $("workshop-message").hidden = !text;
}

function renderEnd(endsAt) {
  const end = new Date(endsAt);
  if (Number.isNaN(end.getTime())) return;
  const time = $("workshop-end-time");
  time.dateTime = end.toISOString();
  time.textContent = end.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function renderNotice() {
  const notice = $("instructor-notice");
  let text = "";
  if (typingNode) text = `The instructor is typing in ${typingNode}`;
  else if (takenOver.size) text = `The instructor has taken over ${[...takenOver].join(", ")}`;
  notice.textContent = text;
  notice.hidden = !text;
  notice.classList.toggle("typing", Boolean(typingNode));
}

function released(node) {
  // Said once, then fades like the typing notice.
  const notice = $("instructor-notice");
  notice.textContent = `The instructor has released ${node}`;
  notice.hidden = false;
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => {
    typingNode = null;
    renderNotice();
  }, TYPING_SHOWN);
}

function onEvent(message) {
  if (message.type === "workshop.message") renderMessage(message.text || "");
  else if (message.type === "workshop.extended") renderEnd(message.ends_at);
  else if (message.type === "instructor.typing") {
    typingNode = message.node;
    renderNotice();
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => {
      typingNode = null;
      renderNotice();
    }, TYPING_SHOWN);
  } else if (message.type === "instructor.takeover") {
    if (message.active) {
      takenOver.add(message.node);
      renderNotice();
    } else {
      takenOver.delete(message.node);
      if (typingNode === message.node) typingNode = null;
      released(message.node);
    }
  }
}

renderMessage(data.message || "");
renderEnd(data.ends_at);
document.addEventListener("pwd:event", (event) => onEvent(event.detail));
