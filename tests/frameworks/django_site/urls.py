from django.urls import path

from django_site import views

urlpatterns = [
    path("find", views.find),
    path("find-plain-green", views.find_plain_green),
    path("find-cbv", views.find_cbv),
    path("atomic", views.atomic_probe),
    path("lag", views.lag),
    path("orm-count", views.orm_count),
    path("orm-await", views.orm_via_await),
    path("orm-write-read", views.orm_write_read),
]
