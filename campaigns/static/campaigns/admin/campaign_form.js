/* The live estimate of the campaign form (campaigns/admin/form_tools.py, form/estimate/).
 *
 * On every change of the form or of the sample purchase (debounced), posts the form's current, unsaved values
 * and the sample as JSON (with the form's CSRF token) and shows the answer in #campaign-estimate-result:
 * "¥10,000 → 100 pt (1.0%, stage Gold)", or why the purchase earns nothing, or the field that is not valid.
 * The result element carries data-state (idle, waiting, ok, zero, invalid, failed), data-points and
 * data-field (the invalid field) for the browser test. The form saves the same with or without this script.
 */
(function () {
  "use strict";

  var DEBOUNCE_MS = 350;

  function start() {
    var box = document.getElementById("campaign-estimate");
    if (!box) { return; }
    var form = box.closest("form");
    // Next to the rates it depends on most: after the stage-rates inline (the admin puts fieldsets first).
    var panel = box.closest("fieldset"), ratesGroup = document.getElementById("rates-group");
    if (panel && ratesGroup) { ratesGroup.parentNode.insertBefore(panel, ratesGroup.nextSibling); }
    var result = document.getElementById("campaign-estimate-result");
    var merchantList = document.getElementById("sample-merchant-list");
    var merchantUrl = box.getAttribute("data-merchant-url");
    var timer = null, sent = 0;

    function field(name) {
      var input = form.elements.namedItem(name);
      return input && typeof input.value === "string" ? input.value : "";
    }

    function moment(name) {  // the admin's split date/time widget: [date, time]
      return form.elements.namedItem(name + "_0") ? [field(name + "_0"), field(name + "_1")] : field(name);
    }

    function rates() {
      var total = parseInt(field("rates-TOTAL_FORMS"), 10) || 0, rows = [];
      for (var i = 0; i < total; i++) {
        var prefix = "rates-" + i + "-", deleted = form.elements.namedItem(prefix + "DELETE");
        if (!form.elements.namedItem(prefix + "rate") || (deleted && deleted.checked)) { continue; }
        var row = {stage_from: field(prefix + "stage_from"), stage_to: field(prefix + "stage_to"),
                   rate: field(prefix + "rate")};
        if (row.stage_from || row.stage_to || row.rate) { rows.push(row); }  // an untouched extra row is no rate
      }
      return rows;
    }

    function number(id) {
      var value = document.getElementById(id).value.trim();
      return value === "" ? null : (/^-?\d+$/.test(value) ? parseInt(value, 10) : value);
    }

    function body() {
      var merchant = document.getElementById("sample-merchant").value.trim();
      var paidOn = document.getElementById("sample-paid-on").value;  // YYYY-MM-DD whatever the locale; noon
      return {
        campaign: {name: field("name"), starts_at: moment("starts_at"), ends_at: moment("ends_at"),
                   upper_limit: field("upper_limit"), user_filters: field("user_filters"),
                   payment_filters: field("payment_filters"), rates: rates()},
        sample: {amount: number("sample-amount"), channel: document.getElementById("sample-channel").value,
                 stage: number("sample-stage"), card_status: number("sample-card-status"),
                 payment_method: document.getElementById("sample-payment-method").value,
                 master_id: merchant || null, paid_at: paidOn ? [paidOn, "12:00:00"] : null}
      };
    }

    function show(state, text, points, fieldName) {
      result.setAttribute("data-state", state);
      result.setAttribute("data-points", points === undefined ? "" : String(points));
      result.setAttribute("data-field", fieldName || "");
      result.textContent = text;
    }

    function query() {
      var mine = ++sent;
      show("waiting", box.getAttribute("data-waiting") || "…");
      fetch(box.getAttribute("data-url"), {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", Accept: "application/json",
                  "X-CSRFToken": field("csrfmiddlewaretoken")},
        body: JSON.stringify(body())
      }).then(function (response) {
        return response.json().then(function (data) { return {status: response.status, data: data}; });
      }).then(function (answer) {
        if (mine !== sent) { return; }  // a newer query is on its way
        var data = answer.data;
        if (answer.status === 200) {
          show(data.eligible ? "ok" : "zero", data.text, data.points);
        } else {
          // the message names its field already (campaigns/rules.py); data-field has it alone
          show(answer.status === 400 ? "invalid" : "failed", data.error || String(answer.status), undefined,
               data.field);
        }
      }).catch(function () {
        if (mine === sent) { show("failed", box.getAttribute("data-failed") || "estimate unavailable"); }
      });
    }

    function later() {
      clearTimeout(timer);
      timer = setTimeout(query, DEBOUNCE_MS);
    }

    form.addEventListener("input", later);
    form.addEventListener("change", later);
    document.addEventListener("formset:added", later);
    document.addEventListener("formset:removed", later);

    var merchant = document.getElementById("sample-merchant"), searchTimer = null;
    merchant.addEventListener("input", function () {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () {
        var q = merchant.value.trim();
        if (!q || !merchantUrl) { return; }
        fetch(merchantUrl + "?q=" + encodeURIComponent(q), {credentials: "same-origin"})
          .then(function (r) { return r.ok ? r.json() : {results: []}; })
          .then(function (data) {
            merchantList.textContent = "";
            (data.results || []).forEach(function (m) {
              var option = document.createElement("option");
              option.value = m.id;
              option.label = m.name || m.id;
              merchantList.appendChild(option);
            });
          }).catch(function () { /* no suggestions; typing an ID still works */ });
      }, 250);
    });
    merchant.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); }
    });
    query();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
