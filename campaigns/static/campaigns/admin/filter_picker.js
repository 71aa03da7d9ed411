/* Filter pickers of the campaign form (campaigns/admin/form_tools.py FilterPickerWidget).
 *
 * The JSON textarea stays the saved value and stays editable: every picker change rewrites the JSON (keys the
 * picker does not manage are kept, so the server still names them), and every edit of the JSON that parses as
 * an object redraws the picker. Without this script the textarea works alone.
 *
 * Elements: #filter-picker-user_filters, #filter-picker-payment_filters; inside, inputs carry data-role
 * (card-status, stage-min, stage-max, inner, outer, merchant-search, invert, method, category) and chosen
 * merchants are .filter-picker-chip[data-id] elements.
 */
(function () {
  "use strict";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs[key]; } else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { node.appendChild(child); });
    return node;
  }

  function checkbox(role, value, label) {
    var input = el("input", {type: "checkbox", "data-role": role, value: String(value)});
    return el("label", {"class": "filter-picker-option"}, [input, document.createTextNode(" " + label)]);
  }

  function group(legend, children) {
    return el("fieldset", {"class": "filter-picker-group"}, [el("legend", {text: legend})].concat(children));
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function Picker(box) {
    this.box = box;
    this.kind = box.getAttribute("data-kind");
    this.textarea = document.getElementById(box.getAttribute("data-target"));
    this.choices = JSON.parse(document.getElementById(box.getAttribute("data-choices")).textContent);
    this.labels = this.choices.labels;
    this.merchantUrl = box.getAttribute("data-merchant-url");
    this.names = {};  // master id -> name, for the chips
    this.value = {};
    this.build();
    this.readJson();
    box.hidden = false;
    var self = this;
    this.textarea.addEventListener("input", function () { self.readJson(); });
    box.addEventListener("change", function (event) {
      if (event.target.getAttribute("data-role") !== "merchant-search") { self.writeJson(); }
    });
  }

  Picker.prototype.build = function () {
    var c = this.choices, l = this.labels, box = this.box;
    this.status = el("p", {"class": "filter-picker-status help", role: "status"});
    if (this.kind === "user") {
      box.appendChild(group(l.card_status, c.card_statuses.map(function (s) {
        return checkbox("card-status", s.value, s.value + " " + s.label);
      })));
      var stageSelect = function (role) {
        var select = el("select", {"data-role": role}, [el("option", {value: "", text: l.any})]);
        c.stages.forEach(function (s) { select.appendChild(el("option", {value: String(s.value), text: s.value + " " + s.label})); });
        return select;
      };
      box.appendChild(group(l.stage_min + " / " + l.stage_max, [
        el("label", {text: l.stage_min + " "}, [stageSelect("stage-min")]),
        el("label", {text: " " + l.stage_max + " "}, [stageSelect("stage-max")])
      ]));
    } else {
      box.appendChild(group(l.channel, [checkbox("inner", "1", l.inner), checkbox("outer", "1", l.outer)]));
      this.chips = el("span", {"class": "filter-picker-chips"});
      this.results = el("ul", {"class": "filter-picker-results"});
      var search = el("input", {type: "search", "data-role": "merchant-search", placeholder: l.merchant_search,
                                autocomplete: "off"});
      box.appendChild(group(l.merchants, [this.chips, search, this.results, checkbox("invert", "1", l.invert)]));
      box.appendChild(group(l.payment_methods, c.payment_methods.map(function (m) { return checkbox("method", m, m); })));
      box.appendChild(group(l.excluded_categories, c.categories.map(function (m) { return checkbox("category", m, m); })));
      this.bindSearch(search);
    }
    box.appendChild(this.status);
  };

  Picker.prototype.inputs = function (role) {
    return Array.prototype.slice.call(this.box.querySelectorAll('[data-role="' + role + '"]'));
  };

  Picker.prototype.ticked = function (role, asNumber) {
    return this.inputs(role).filter(function (i) { return i.checked; })
      .map(function (i) { return asNumber ? Number(i.value) : i.value; });
  };

  Picker.prototype.tick = function (role, values) {
    var wanted = (Array.isArray(values) ? values : []).map(String);
    this.inputs(role).forEach(function (i) { i.checked = wanted.indexOf(i.value) !== -1; });
  };

  Picker.prototype.chosenMerchants = function () {
    return Array.prototype.map.call(this.chips.querySelectorAll(".filter-picker-chip"),
                                    function (chip) { return chip.getAttribute("data-id"); });
  };

  Picker.prototype.addChip = function (id) {
    if (this.chosenMerchants().indexOf(id) !== -1) { return; }
    var self = this, name = this.names[id];
    var remove = el("button", {type: "button", "class": "filter-picker-remove", "aria-label": this.labels.remove,
                               text: "\u00d7"});
    var chip = el("span", {"class": "filter-picker-chip", "data-id": id,
                           text: id + (name === undefined ? "" : name ? " " + name : " (" + this.labels.unknown_master + ")") + " "},
                  [remove]);
    remove.addEventListener("click", function () { chip.parentNode.removeChild(chip); self.writeJson(); });
    this.chips.appendChild(chip);
  };

  Picker.prototype.fetchMerchants = function (params, done) {
    fetch(this.merchantUrl + "?" + params, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) { return r.ok ? r.json() : {results: []}; })
      .then(function (data) { done(data.results || []); })
      .catch(function () { done([]); });
  };

  Picker.prototype.bindSearch = function (search) {
    var self = this, timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var q = search.value.trim();
        self.results.textContent = "";
        if (!q) { return; }
        self.fetchMerchants("q=" + encodeURIComponent(q), function (found) {
          self.results.textContent = "";
          found.forEach(function (m) {
            self.names[m.id] = m.name;
            var button = el("button", {type: "button", "class": "filter-picker-result", "data-id": m.id,
                                       text: m.id + (m.name ? " " + m.name : "") + (m.category ? " [" + m.category + "]" : "")});
            button.addEventListener("click", function () {
              self.addChip(m.id);
              self.results.textContent = "";
              search.value = "";
              self.writeJson();
            });
            self.results.appendChild(el("li", {}, [button]));
          });
        });
      }, 250);
    });
    search.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); }  // do not submit the whole form
    });
  };

  Picker.prototype.readJson = function () {
    var text = this.textarea.value.trim(), parsed;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch (e) {
      parsed = null;
    }
    if (!isObject(parsed)) {
      this.status.textContent = this.labels.json_invalid;
      this.box.setAttribute("data-json-valid", "false");
      return;
    }
    this.status.textContent = "";
    this.box.setAttribute("data-json-valid", "true");
    this.value = parsed;
    if (this.kind === "user") {
      this.tick("card-status", parsed.mercard_status);
      var stage = isObject(parsed.stage) ? parsed.stage : {};
      this.inputs("stage-min")[0].value = stage.min === undefined ? "" : String(stage.min);
      this.inputs("stage-max")[0].value = stage.max === undefined ? "" : String(stage.max);
    } else {
      var hasInner = "mercari_inner_payment" in parsed, hasOuter = "mercari_outer_payment" in parsed;
      var both = !hasInner && !hasOuter;  // rules.py: neither given = both qualify; one given = the other false
      this.inputs("inner")[0].checked = both || parsed.mercari_inner_payment === true;
      this.inputs("outer")[0].checked = both || parsed.mercari_outer_payment === true;
      var merchant = isObject(parsed.merchant) ? parsed.merchant : {};
      var ids = Array.isArray(merchant.shop_id) ? merchant.shop_id.map(String) : [];
      this.chips.textContent = "";
      var self = this, missing = ids.filter(function (id) { return !(id in self.names); });
      ids.forEach(function (id) { self.addChip(id); });
      if (missing.length) {
        this.fetchMerchants("ids=" + encodeURIComponent(missing.join(",")), function (found) {
          found.forEach(function (m) { self.names[m.id] = m.name; });
          missing.forEach(function (id) { if (!(id in self.names)) { self.names[id] = ""; } });
          if (self.chosenMerchants().join(",") === ids.join(",")) {
            self.chips.textContent = "";
            ids.forEach(function (id) { self.addChip(id); });
          }
        });
      }
      this.inputs("invert")[0].checked = merchant.invert === true;
      this.tick("method", parsed.payment_methods);
      this.tick("category", parsed.excluded_categories);
    }
  };

  Picker.prototype.writeJson = function () {
    var value = isObject(this.value) ? JSON.parse(JSON.stringify(this.value)) : {};
    var set = function (key, present, v) { if (present) { value[key] = v; } else { delete value[key]; } };
    if (this.kind === "user") {
      var statuses = this.ticked("card-status", true);
      set("mercard_status", statuses.length > 0, statuses);
      var stage = {}, min = this.inputs("stage-min")[0].value, max = this.inputs("stage-max")[0].value;
      if (min !== "") { stage.min = Number(min); }
      if (max !== "") { stage.max = Number(max); }
      set("stage", min !== "" || max !== "", stage);
    } else {
      var inner = this.inputs("inner")[0].checked, outer = this.inputs("outer")[0].checked;
      set("mercari_inner_payment", !(inner && outer), inner);
      set("mercari_outer_payment", !(inner && outer), outer);
      var ids = this.chosenMerchants(), invert = this.inputs("invert")[0].checked;
      set("merchant", ids.length > 0, invert ? {shop_id: ids, invert: true} : {shop_id: ids});
      var methods = this.ticked("method");
      set("payment_methods", methods.length > 0, methods);
      var categories = this.ticked("category");
      set("excluded_categories", categories.length > 0, categories);
    }
    this.value = value;
    this.textarea.value = Object.keys(value).length ? JSON.stringify(value, null, 1) : "{}";
    this.status.textContent = "";
    this.box.setAttribute("data-json-valid", "true");
    // the estimate listens to the form's input events
    this.textarea.dispatchEvent(new Event("input", {bubbles: true}));
  };

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll(".filter-picker[data-kind]"), function (box) {
      if (!box.pickerReady) { box.pickerReady = true; new Picker(box); }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
