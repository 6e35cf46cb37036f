// The preview desk's only script (served from this server; the CSP allows no other).
// 1. Email previews: each sandboxed iframe grows to the height of the email it shows, so the
//    whole message reads without a scrollbar inside a scrollbar. (The iframe is sandboxed
//    without scripts; "allow-same-origin" only lets this page measure it.)
// 2. Forms with data-confirm ask before an action that cannot be undone.
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
    var forms = document.querySelectorAll("form[data-confirm]");
    Array.prototype.forEach.call(forms, function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
