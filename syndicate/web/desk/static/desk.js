// The preview desk's only script (served from this server; the CSP allows no other).
// 1. Email previews: each sandboxed iframe grows to the height of the email it shows, so the
//    whole message reads without a scrollbar inside a scrollbar. (The iframe is sandboxed
//    without scripts; "allow-same-origin" only lets this page measure it.)
// 2. Forms with data-confirm ask before an action that cannot be undone.
// 3. Subject and preheader fields (data-count="LIMIT") count their characters as you type, and
//    the inbox line below them shows what an inbox list would show (cut at data-inbox-length).
//    The server measures again on save; this only shows the limits live.
(function () {
  "use strict";

  var MAX_HEIGHT = 1400;

  function fit(frame) {
    try {
      var doc = frame.contentDocument;
      if (!doc || !doc.documentElement) { return; }
      var height = Math.max(doc.documentElement.scrollHeight, doc.body ? doc.body.scrollHeight : 0);
      // Long emails scroll inside their frame, so the page stays easy to move through.
      if (height > 0) { frame.style.height = Math.min(height + 2, MAX_HEIGHT) + "px"; }
    } catch (e) { /* not measurable: keep the fixed height */ }
  }

  function ready() {
    var frames = document.querySelectorAll(".frame iframe");
    Array.prototype.forEach.call(frames, function (frame) {
      frame.addEventListener("load", function () {
        fit(frame);
        setTimeout(function () { fit(frame); }, 400); // images arrive later
      });
      fit(frame);
    });
    var counted = document.querySelectorAll("input[data-count]");
    Array.prototype.forEach.call(counted, function (input) {
      input.addEventListener("input", function () { count(input); });
      count(input);
    });
    var refused = document.querySelector(".email-edit [role=alert], .edit [role=alert]");
    if (refused) {
      // Focus on the error, so keyboard and screen-reader users land where the save failed.
      // Again once the page has loaded: going to the #d… fragment moves focus back to the page.
      refused.setAttribute("tabindex", "-1");
      refused.focus();
      window.addEventListener("load", function () { setTimeout(function () { refused.focus(); }, 0); });
    }
    var forms = document.querySelectorAll("form[data-confirm]");
    Array.prototype.forEach.call(forms, function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  function chars(text) { return Array.from(text.replace(/\s+/g, " ").trim()).length; }

  function count(input) {
    var limit = parseInt(input.getAttribute("data-count"), 10);
    var soft = parseInt(input.getAttribute("data-soft") || "0", 10);
    var n = chars(input.value);
    var counter = document.querySelector("[data-counter-for='" + input.id + "']");
    if (counter) {
      var line = n + " / " + limit + " characters";
      if (n > limit) { line += " (" + (n - limit) + " over: it will be refused)"; }
      else if (soft && n > soft) { line += " (about " + soft + " show on a phone: the rest is cut)"; }
      else if (soft) { line += " (about " + soft + " show on a phone)"; }
      counter.textContent = line;
      counter.classList.toggle("over", n > limit);
    }
    var form = input.form;
    var box = form && form.querySelector("[data-inbox-line]");
    if (!box) { return; }
    var subject = form.querySelector("input[name=subject]").value.replace(/\s+/g, " ").trim();
    var preheader = form.querySelector("input[name=preheader]").value.replace(/\s+/g, " ").trim();
    var room = parseInt(box.getAttribute("data-inbox-length"), 10) - Array.from(subject).length;
    var shown = room > 0 ? Array.from(preheader).slice(0, room).join("") : "";
    if (room > 0 && Array.from(preheader).length > room) { shown += "…"; }
    box.querySelector(".inbox-subject").textContent = subject;
    box.querySelector(".inbox-preheader").textContent = shown;
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
