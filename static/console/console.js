// ordo console: the print button of packing slips, and live countdowns on "expiring soon".
// Each [data-deadline] (unix ms) shows the time left, ticking every second, measured against
// the server's clock (data-server-now on the rows, refreshed by htmx) so a wrong clock in
// the browser does not matter.
(function () {
  "use strict";
  var offset = 0;

  function sync() {
    var rows = document.querySelector("[data-server-now]");
    if (rows) {
      offset = Number(rows.getAttribute("data-server-now")) - Date.now();
    }
  }

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function tick() {
    var table = document.getElementById("expiring");
    if (!table) {
      return;
    }
    var hours = table.getAttribute("data-format-hours");
    var minutes = table.getAttribute("data-format-minutes");
    var overdue = table.getAttribute("data-overdue");
    var now = Date.now() + offset;
    table.querySelectorAll("[data-deadline]").forEach(function (el) {
      var left = Math.floor((Number(el.getAttribute("data-deadline")) - now) / 1000);
      var text;
      if (left <= 0) {
        text = overdue;
        el.closest("tr").classList.add("overdue");
      } else if (left >= 3600) {
        text = hours.replace("{h}", String(Math.floor(left / 3600)))
          .replace("{m}", pad(Math.floor(left / 60) % 60));
      } else {
        text = minutes.replace("{m}", String(Math.floor(left / 60)))
          .replace("{s}", pad(left % 60));
      }
      if (el.textContent !== text) {
        el.textContent = text;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    // Packing slips: the print button (no inline script under the page's policy).
    document.querySelectorAll("[data-print]").forEach(function (button) {
      button.addEventListener("click", function () {
        window.print();
      });
    });
    sync();
    tick();
    window.setInterval(tick, 1000);
  });
  document.addEventListener("htmx:afterSwap", function () {
    sync();
    tick();
  });
})();
