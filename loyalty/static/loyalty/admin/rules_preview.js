/* The stage-rules form's Preview button (loyalty/admin_preview.py).
 *
 * Posts the form (definition as typed, CSRF token included) to the preview URL and puts the answer, a summary,
 * a chart and two tables, into #rules-preview, which carries data-state (idle, waiting, ok, invalid, failed).
 * Nothing is saved. Without this script the button posts the form to the same URL and gets a whole page.
 */
(function () {
  "use strict";

  function start() {
    var button = document.getElementById("rules-preview-button");
    var box = document.getElementById("rules-preview");
    if (!button || !box) { return; }
    var form = button.form, sent = 0;

    button.addEventListener("click", function (event) {
      event.preventDefault();
      var mine = ++sent;
      box.setAttribute("data-state", "waiting");
      box.textContent = box.getAttribute("data-waiting") || "…";
      fetch(box.getAttribute("data-url"), {
        method: "POST", credentials: "same-origin", body: new FormData(form),
        headers: {"X-Rules-Preview": "1", "X-CSRFToken": form.elements.namedItem("csrfmiddlewaretoken").value}
      }).then(function (response) {
        return response.text().then(function (html) { return {status: response.status, html: html}; });
      }).then(function (answer) {
        if (mine !== sent) { return; }
        if (answer.status !== 200 && answer.status !== 400) { throw new Error(String(answer.status)); }
        box.innerHTML = answer.html;  // our own server's template, every value escaped there
        box.setAttribute("data-state", answer.status === 200 ? "ok" : "invalid");
      }).catch(function () {
        if (mine !== sent) { return; }
        box.setAttribute("data-state", "failed");
        box.textContent = box.getAttribute("data-failed") || "preview unavailable";
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
