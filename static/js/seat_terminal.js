// A seat's node terminal on the classroom wall (docs/workshops.md): the terminal
// protocol on /ws/workshops/<id>/seats/<n>/nodes/<node>/terminal/, drawn at the
// trainee's size, never sending a resize, and typing only while taken over (the server
// enforces both as well).
import { NodeTerminal } from "./terminal.js";

const CLOSE_FORBIDDEN = 4403;

export class SeatTerminal extends NodeTerminal {
  // As NodeTerminal's, and `onTakeover(terminal)`: the server confirmed a take-over's
  // start or end (`takingOver`).
  constructor({ onTakeover, ...options }) {
    super(options);
    this.onTakeover = onTakeover;
    this.takingOver = false;
    this.term.options.disableStdin = true;
    this.term.options.cursorBlink = false;
  }

  connect() {
    super.connect();
    const ws = this.ws;
    const closed = ws.onclose;
    ws.onclose = (event) => {
      if (event.code === CLOSE_FORBIDDEN && ws === this.ws) {
        this.final = true;
        this.setState("closed", "Only the workshop's instructors may watch it.");
        return;
      }
      closed(event);
    };
  }

  onControl(message) {
    if (message.type === "status" && message.state === "connected") {
      this.follow(message.cols, message.rows);
      // A new connection starts read-only: take over again if we held it.
      if (this.takingOver) this.send({ type: "takeover", active: true });
    } else if (message.type === "takeover") {
      this.takingOver = message.active;
      this.term.options.disableStdin = !message.active;
      this.onTakeover(this);
      return;
    }
    super.onControl(message);
  }

  // Draw at the trainee's size: from the socket's status, and the wall's screens after.
  follow(cols, rows) {
    if (cols > 0 && rows > 0 && (cols !== this.term.cols || rows !== this.term.rows)) {
      this.term.resize(cols, rows);
    }
  }

  send(message) {
    if (message.type === "resize") return;
    if (message.type === "input" && !this.takingOver) return;
    super.send(message);
  }

  refit() {
    // The trainee's size, not this window's: see follow().
  }

  takeover(active) {
    this.takingOver = active; // the server's answer confirms it
    this.term.options.disableStdin = !active;
    this.send({ type: "takeover", active });
  }
}
