"""Packages of the apachews module for config management: a .deb for the Debian layout (deb.py), an .rpm for
the RHEL one (rpm.py); what they share (the module's measured needs, the file that loads it) is in common.py.
`apachews package --deb/--rpm` calls build_deb / build_rpm.
"""

from __future__ import annotations

from apachews.packaging.common import Needs, mmn_major, needs_of
from apachews.packaging.deb import MARKER, PACKAGE, DebPackage, build_deb, load_file
from apachews.packaging.rpm import RPM_LOAD_CONF, RPM_MODULES, RPM_NAME, RpmPackage, build_rpm

__all__ = ["MARKER", "PACKAGE", "RPM_LOAD_CONF", "RPM_MODULES", "RPM_NAME", "DebPackage", "Needs", "RpmPackage"]
__all__ += ["build_deb", "build_rpm", "load_file", "mmn_major", "needs_of"]
