// Hallpass web interface: live regions, countdowns, credential reveal.
// The pages work without it; this only keeps them current and handy.
// No inline script anywhere: the Content-Security-Policy forbids it.
"use strict";

(function () {
  // Copies what was typed in the old region's fields into the new one, so a
  // live update never eats a half-written comment.
  function keepTyped(oldRegion, newRegion) {
    oldRegion.querySelectorAll("input[name], textarea[name], select[name]").forEach(function (field) {
      if (field.type === "hidden") return;
      var twin = field.id
        ? newRegion.querySelector("#" + CSS.escape(field.id))
        : newRegion.querySelector('[name="' + CSS.escape(field.name) + '"]');
      if (twin && twin.tagName === field.tagName) twin.value = field.value;
    });
  }

  var refreshing = false;
  var again = false;

  // Fetches this page again and swaps each live region whose content changed.
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store", headers: { "X-Hallpass-Live": "1" } })
      .then(function (response) {
        if (response.redirected || !response.ok) return null;
        return response.text();
      })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (region) {
          var next = fresh.getElementById(region.id);
          if (!next || next.innerHTML === region.innerHTML) return;
          var focused = document.activeElement && region.contains(document.activeElement) ? document.activeElement.id : null;
          keepTyped(region, next);
          region.replaceWith(next);
          if (focused) {
            var restored = document.getElementById(focused);
            if (restored) restored.focus();
          }
        });
        bind(document);
        tick();
      })
      .catch(function () {})
      .finally(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  function listen() {
    var url = document.body.dataset.events;
    if (!url || !window.EventSource) return;
    var source = new EventSource(url);
    var timer = null;
    source.onmessage = function () {
      // Several events of one change arrive together: one refresh for them.
      if (timer) return;
      timer = setTimeout(function () { timer = null; refresh(); }, 150);
    };
  }

  function left(seconds) {
    if (seconds <= 0) return "expired";
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s left";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-expires-at]").forEach(function (el) {
      var at = Date.parse(el.dataset.expiresAt);
      if (!isNaN(at)) el.textContent = left(Math.floor((at - now) / 1000));
    });
  }

  function reveal(button) {
    var target = document.getElementById(button.dataset.target);
    button.disabled = true;
    fetch(button.dataset.reveal, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.json().then(function (body) { return [response.ok, body]; }); })
      .then(function (result) {
        target.textContent = result[0] ? result[1].text : (result[1].error || "The credential could not be fetched.");
        target.classList.toggle("error", !result[0]);
      })
      .catch(function () { target.textContent = "The credential could not be fetched."; })
      .finally(function () { button.disabled = false; });
  }

  function bind(root) {
    root.querySelectorAll("[data-reveal]").forEach(function (button) {
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      button.addEventListener("click", function () { reveal(button); });
    });
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      button.addEventListener("click", function () {
        var text = document.getElementById(button.dataset.copy).textContent;
        if (text && navigator.clipboard) navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    bind(document);
    tick();
    setInterval(tick, 1000);
    listen();
  });
})();
