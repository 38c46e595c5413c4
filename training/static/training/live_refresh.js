/*
 * Live refresh of a training admin page (a running job, a building dataset). Plain JS, no library.
 *
 * Every element with data-live-url is replaced, every two seconds, by the HTML fragment that URL
 * returns (same origin, the admin session); elements elsewhere on the page marked
 * data-live-slot="name" take the content of the fragment's data-live-slot-source="name", so the
 * heading's status changes with the panel. The fragment marks itself with
 * data-live-state="active" while there is more to come; once it says "done" the whole page is
 * reloaded, so the finished job's evaluation appears, unless the container has data-live-keep:
 * then the last fragment is the final state (a dataset's panel carries everything that changes). Polling
 * pauses while the tab is hidden and stops after a few failures (a lost session, a server error).
 */
"use strict";
(function () {
  const INTERVAL_MS = 2000;
  const MAX_FAILURES = 5;

  function isActive(container) {
    const marker = container.querySelector("[data-live-state]");
    return marker !== null && marker.getAttribute("data-live-state") === "active";
  }

  // Parts of the page outside the container that show the same live values (the status beside
  // the heading): the fragment carries them in data-live-slot-source elements.
  function fillSlots(container) {
    container.querySelectorAll("[data-live-slot-source]").forEach(function (source) {
      const name = source.getAttribute("data-live-slot-source");
      document.querySelectorAll('[data-live-slot="' + CSS.escape(name) + '"]').forEach(function (slot) {
        slot.innerHTML = source.innerHTML;
      });
    });
  }

  function stop(container) {
    const note = document.createElement("p");
    note.className = "training-live-note";
    note.textContent = "Live updates stopped; reload the page to see the latest state.";
    container.appendChild(note);
  }

  function watch(container) {
    const url = container.getAttribute("data-live-url");
    let failures = 0;

    function schedule() {
      window.setTimeout(tick, INTERVAL_MS);
    }

    async function tick() {
      if (document.hidden) {
        schedule();
        return;
      }
      try {
        const response = await fetch(url, {
          credentials: "same-origin",
          cache: "no-store",
          headers: { "X-Requested-With": "XMLHttpRequest" },
        });
        // A redirect means the session ended (the login page): never paste that into the page.
        if (!response.ok || response.redirected) {
          throw new Error("live update failed: " + response.status);
        }
        container.innerHTML = await response.text();
        fillSlots(container);
        failures = 0;
      } catch (error) {
        failures += 1;
        if (failures >= MAX_FAILURES) {
          stop(container);
          return;
        }
        schedule();
        return;
      }
      if (isActive(container)) {
        schedule();
      } else if (!container.hasAttribute("data-live-keep")) {
        window.location.reload();
      }
    }

    if (url && isActive(container)) {
      schedule();
    }
  }

  function init() {
    document.querySelectorAll("[data-live-url]").forEach(watch);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
