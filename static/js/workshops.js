// The instructor's dashboard: the form that creates a workshop (POST /api/workshops/).
// The CSRF token comes from the form: the cookie is HttpOnly.
import { call } from "./api.js";

const form = document.getElementById("create-form");
const $ = (id) => document.getElementById(id);

function csrfToken() {
  return form.querySelector("[name=csrfmiddlewaretoken]").value;
}

// datetime-local holds the browser's local time without a zone; the API wants ISO 8601.
function instant(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

function body() {
  const layout = form.querySelector("[name=layout]:checked").value;
  const request = {
    title: $("title").value.trim(),
    seats: Number.parseInt($("seats").value, 10),
    image: $("image").value,
  };
  if (layout === "template") request.template = $("template").value;
  else request.nodes_per_seat = Number.parseInt($("nodes_per_seat").value, 10);
  for (const field of ["starts_at", "ends_at"]) {
    const value = instant($(field).value);
    if (value === undefined) throw new Error(`${field.replace("_at", "")}: not a date and time`);
    if (value) request[field] = value;
  }
  return request;
}

function showError(text) {
  $("create-error").textContent = text;
  $("create-error").hidden = !text;
}

function syncLayout() {
  const template = form.querySelector("[name=layout]:checked").value === "template";
  $("template").disabled = !template;
  $("nodes_per_seat").disabled = template;
}

async function create(event) {
  event.preventDefault();
  showError("");
  $("create-warning").hidden = true;
  let request;
  try {
    request = body();
  } catch (error) {
    showError(error.message);
    return;
  }
  if (!request.title) {
    showError("title: give the workshop a title.");
    $("title").focus();
    return;
  }
  if (!Number.isInteger(request.seats)) {
    showError("seats: give a number of seats.");
    $("seats").focus();
    return;
  }
  $("create").disabled = true;
  $("create-status").textContent = "Creating the workshop…";
  try {
    const workshop = await call("POST", "/api/workshops/", request, { "X-CSRFToken": csrfToken() });
    const warning = workshop.capacity?.warning;
    if (!warning) {
      $("create-status").textContent = "Created; opening its wall…";
      location.assign(workshop.dashboard_url);
      return;
    }
    // A shortfall is the instructor's to know now, not the trainees' to find later.
    $("create-status").textContent = `Created ${workshop.title}: join code ${workshop.join_code}.`;
    $("create-warning-text").textContent = warning;
    $("create-open").href = workshop.dashboard_url;
    $("create-warning").hidden = false;
    $("create-open").focus();
  } catch (error) {
    $("create-status").textContent = "";
    showError(error.message);
  } finally {
    $("create").disabled = false;
  }
}

for (const radio of form.querySelectorAll("[name=layout]")) radio.addEventListener("change", syncLayout);
syncLayout();
form.addEventListener("submit", create);
