"""
Where the server finds its front ends, storage back ends and PBX
applications: Twisted plugins providing the interfaces of
L{communigate.interfaces}.  Other distributions can add plugins by shipping
modules in their own C{communigate/plugins/} directory.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
