"""Local fakes of the seed apps' APIs, served on 127.0.0.1 for end-to-end tests and the demo.

Each fake follows the contract the app's manifests are written against (issue 13), keeps
every request it received, and answers errors the way the real API documents them.
"""

from tests.fakes.clevertap import CleverTapFake
from tests.fakes.livelike import LiveLikeFake
from tests.fakes.profiles import ProfilesFake

__all__ = ["CleverTapFake", "LiveLikeFake", "ProfilesFake"]
